"""`mllm-classify bench ...`: benchmarks that print measured figures."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("bench")
def bench_group() -> None:
    """Run benchmarks and print their figures."""


@bench_group.command("mapping")
@click.option("--encoder", default="all-MiniLM-L6-v2", show_default=True, help="sentence-transformers model id or folder.")
@click.option("--skip-21k", is_flag=True, help="Skip the ImageNet-21k build, load and HNSW recall figures.")
@click.option("--name-answers", type=click.IntRange(min=100), default=20_000, show_default=True, help="Answers timed on the name-match path.")
@click.option("--embedding-answers", type=click.IntRange(min=10), default=512, show_default=True, help="Answers timed on the embedding path.")
@click.option("--recall-queries", type=click.IntRange(min=10), default=1000, show_default=True, help="Queries for HNSW recall.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Timed rounds per throughput figure (median).")
def bench_mapping(encoder: str, skip_21k: bool, name_answers: int, embedding_answers: int, recall_queries: int, rounds: int) -> None:
    """Time index builds and loads, mapping throughput and HNSW recall (fresh temporary cache)."""
    from bench.mapping_bench import run

    run(
        encoder_name=encoder,
        include_21k=not skip_21k,
        name_answers=name_answers,
        embedding_answers=embedding_answers,
        recall_queries=recall_queries,
        rounds=rounds,
        echo=click.echo,
    )


@bench_group.command("decoding")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"), show_default=True, help="Directory of the offline models; bench-llava is built there if missing.")
@click.option("--images", "num_images", type=click.IntRange(min=1), default=4, show_default=True, help="Images per batch.")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True, help="Timed rounds per method (median).")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Distinct classes returned by constrained decoding.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=24, show_default=True, help="Tokens generated per closed answer.")
def bench_decoding(models_dir: Path, num_images: int, rounds: int, top_k: int, max_new_tokens: int) -> None:
    """Compare closed prompts with constrained decoding, and scoring with and without prefix reuse."""
    from bench.decoding_bench import run

    run(models_dir, num_images=num_images, rounds=rounds, top_k=top_k, max_new_tokens=max_new_tokens, echo=click.echo)


@bench_group.command("serve")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"), show_default=True, help="Directory of the models built by `mllm-classify build-models`.")
@click.option("--model", "models", multiple=True, default=("bench-llava", "tiny-llava"), show_default=True, help="Model folder under --models-dir; repeat for several.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=8, show_default=True, help="Tokens generated per answer, everywhere.")
@click.option("--torch-threads", type=click.IntRange(min=0), default=1, show_default=True, help="torch intra-op threads in the raw runs, the service and the peer; 0 keeps torch's default (one per core).")
@click.option("--max-batch-size", type=click.IntRange(min=0), default=0, show_default=True, help="Batch limit of the adaptive service and the peer; 0 takes the best batch size of the first raw round.")
@click.option("--max-latency-ms", type=click.IntRange(min=10), default=600000, show_default=True, help="The service's batching.max_latency_ms. A prompt queued longer fails with 503, so it must exceed the queue wait at 32 clients.")
@click.option("--peer-batch-timeout", type=click.FloatRange(min=0), default=0.01, show_default=True, help="Seconds LitServe waits to fill a batch.")
@click.option("--one-client-requests", type=click.IntRange(min=2), default=24, show_default=True, help="Requests at one client.")
@click.option("--requests-per-client", type=click.IntRange(min=1), default=4, show_default=True, help="Requests per client at 8 and 32 clients.")
@click.option("--min-level-s", type=click.FloatRange(min=0), default=8.0, show_default=True, help="Seconds each load level should last at raw speed; fast models get more requests than the counts above.")
@click.option("--max-level-s", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Time limit of each load level in seconds.")
@click.option("--skip-peer", is_flag=True, help="Do not start the LitServe peer.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/bench/serve.json"), show_default=True, help="Where to write the JSON results.")
def bench_serve(
    models_dir: Path,
    models: tuple[str, ...],
    max_new_tokens: int,
    torch_threads: int,
    max_batch_size: int,
    max_latency_ms: int,
    peer_batch_timeout: float,
    one_client_requests: int,
    requests_per_client: int,
    min_level_s: float,
    max_level_s: float,
    skip_peer: bool,
    json_path: Path,
) -> None:
    """Compare raw batched generate, the service and a LitServe peer on each model, in one run on 127.0.0.1."""
    import logging

    from bench.serve_bench import BenchSettings, run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = BenchSettings(
        models=models,
        models_dir=models_dir,
        max_new_tokens=max_new_tokens,
        torch_threads=torch_threads,
        max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms,
        peer_batch_timeout_s=peer_batch_timeout,
        one_client_requests=one_client_requests,
        requests_per_client=requests_per_client,
        min_level_s=min_level_s,
        max_level_s=max_level_s,
        skip_peer=skip_peer,
    )
    run(settings, json_path, echo=click.echo)
