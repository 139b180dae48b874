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
