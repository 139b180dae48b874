"""`mllm-classify classify`: send images to a running service, print one JSON object each."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


@click.command("classify")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, help="HTTP base URL of the service.")
@click.option("--grpc", "grpc_target", default=None, help="host:port of the gRPC API; used instead of --url when set.")
@click.option("--protocol", default="open", show_default=True,
              type=click.Choice(["open", "closed", "choice", "multilabel", "constrained", "score"]))
@click.option("--taxonomy", default=None, help="Taxonomy name; default: the service's default.")
@click.option("--candidate", "candidates", multiple=True, help="Class id or name to restrict the answer to; repeatable.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Ranked labels per image.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the option order of the choice protocol.")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds to wait per request.")
@click.option("--api-key-env", default="MLLM_CLASSIFY_API_KEY", show_default=True,
              help="Environment variable holding the API key, if the service requires one.")
def classify_command(
    images: tuple[Path, ...],
    url: str,
    grpc_target: str | None,
    protocol: str,
    taxonomy: str | None,
    candidates: tuple[str, ...],
    top_k: int,
    seed: int,
    timeout: float,
    api_key_env: str,
) -> None:
    """Classify IMAGES with a running service and print one JSON object per image."""
    from service.schemas import ClassifyParams

    params = ClassifyParams(
        protocol=protocol, taxonomy=taxonomy, candidates=list(candidates) or None, top_k=top_k, seed=seed
    )
    api_key = os.environ.get(api_key_env) or None

    if grpc_target:
        from service.grpc.client import GrpcClient

        client = GrpcClient(grpc_target, api_key=api_key, timeout=timeout)
    else:
        from service.client import HttpClient

        client = HttpClient(url, api_key=api_key, timeout=timeout)

    failed = 0
    with client:
        for path in images:
            try:
                result = client.classify(path, params)
            except Exception as error:  # noqa: BLE001 - report every failure per image and go on
                failed += 1
                click.echo(json.dumps({"image": str(path), "error": str(error)}), err=False)
                continue
            click.echo(json.dumps({"image": str(path), **result.model_dump()}))
    if failed:
        sys.exit(1)
