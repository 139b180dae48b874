"""`make demo`: start the service, classify the bundled photos over HTTP (and gRPC), print a table.

The demo model was trained for seconds on these same photos: it shows the
serving path end to end, not the accuracy of an MLLM.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

from service.client import HttpClient
from service.launcher import free_port, start_service
from service.schemas import ClassifyParams


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _row(name: str, protocol: str, result, latency_ms: float) -> str:
    if result.abstain:
        top = "(abstained)"
    elif result.out_of_list:
        top = "(out of list; nearest: " + (result.labels[0].name if result.labels else "-") + ")"
    else:
        # Class ids tell apart classes that share a name, such as the two "missile" classes.
        top = ", ".join(f"{label.name} {label.id} ({label.score:.2f})" for label in result.labels[:2]) or "-"
    answer = result.raw_answer.replace("\n", " ")[:20]
    return f"{name:<13} {protocol:<9} {answer:<20} {top[:60]:<60} {result.method:<9} {latency_ms:>7.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/demo-llava", help="Model id or local path to serve.")
    parser.add_argument("--no-grpc", action="store_true", help="Skip the gRPC call.")
    args = parser.parse_args(argv)

    from service.models.samples import sample_images

    photos = {name: _png_bytes(image) for name, image in sample_images().items()}
    grpc_port = None if args.no_grpc else free_port()

    print(f"starting the service with the demo model {args.model} on 127.0.0.1 ...", flush=True)
    with start_service(args.model, grpc_port=grpc_port) as service, HttpClient(service.url) as client:
        print(f"ready in {service.ready_seconds:.1f} s at {service.url}\n")
        print(f"{'image':<13} {'protocol':<9} {'answer':<20} {'top classes':<60} {'method':<9} {'ms':>7}")
        print("-" * 122)
        for protocol in ("open", "choice"):
            for name, data in photos.items():
                started = time.perf_counter()
                result = client.classify(data, ClassifyParams(protocol=protocol, top_k=3))
                print(_row(name, protocol, result, (time.perf_counter() - started) * 1000))

        if grpc_port is not None:
            from service.grpc.client import GrpcClient

            with GrpcClient(service.grpc_target) as grpc_client:
                started = time.perf_counter()
                result = grpc_client.classify(photos["cat"], ClassifyParams(top_k=3))
                print(f"\nover gRPC ({service.grpc_target}):")
                print(_row("cat", "open", result, (time.perf_counter() - started) * 1000))
    print("\nservice stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
