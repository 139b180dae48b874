"""`mllm-classify build-models`: build the offline test and demo models."""

from __future__ import annotations

import time

import click

# Kept in sync with service.models.build.MODEL_NAMES; listed here so that
# `--help` does not import torch.
_MODEL_CHOICES = ("tiny-llava", "tiny-idefics3", "bench-llava", "demo-llava")


@click.command("build-models")
@click.option("--out", "out_dir", default="models", show_default=True, type=click.Path(file_okay=False), help="Directory that receives one subdirectory per model.")
@click.option("--only", multiple=True, type=click.Choice(_MODEL_CHOICES), help="Build only this model; repeat for several. Default: all.")
@click.option("--force", is_flag=True, help="Rebuild models even when an up-to-date build exists.")
def build_models_command(out_dir: str, only: tuple[str, ...], force: bool) -> None:
    """Build the tiny test models and the demo model (random or briefly trained weights, no download)."""
    from service.models import build_models

    started = time.perf_counter()
    results = build_models(out_dir, only=list(only) or None, force=force)
    for result in results:
        if result.built:
            click.echo(f"built    {result.name:<14} {result.parameters / 1e6:6.2f}M params  {result.seconds:6.1f} s  {result.path}")
        else:
            click.echo(f"skipped  {result.name:<14} up to date  {result.path}")
    click.echo(f"done in {time.perf_counter() - started:.1f} s")
