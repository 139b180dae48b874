"""`mllm-classify map` and `mllm-classify taxonomy build|show|validate`.

Defaults for the encoder, index kind, cache folder and threshold come from the
service configuration (service/config.yaml and MLLM_CLASSIFY_MAPPING__* overrides).
The mapping library loads inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mapping import Mapper


def _mapping_defaults() -> dict[str, object]:
    from service.config import load_config

    config = load_config().mapping
    return {
        "taxonomy": config.taxonomy,
        "encoder": config.encoder,
        "index": config.index,
        "cache_dir": config.cache_dir,
        "threshold": config.out_of_list_threshold,
    }


def _build_mapper(taxonomy: str, encoder: str | None, index: str | None, cache_dir: str | None, threshold: float | None) -> Mapper:
    from mapping import Mapper, TaxonomyError, load_encoder, load_taxonomy

    defaults = _mapping_defaults()
    try:
        loaded = load_taxonomy(taxonomy)
    except TaxonomyError as error:
        raise click.ClickException(str(error)) from error
    return Mapper(
        loaded,
        load_encoder(encoder or str(defaults["encoder"])),
        index_kind=index or str(defaults["index"]),
        cache_dir=Path(cache_dir or str(defaults["cache_dir"])).expanduser(),
        out_of_list_threshold=float(defaults["threshold"]) if threshold is None else threshold,
    )


_COMMON_OPTIONS = [
    click.option("--encoder", default=None, help="sentence-transformers model id or folder [default: mapping.encoder from the config]."),
    click.option("--index", "index_kind", type=click.Choice(["flat", "hnsw"]), default=None, help="FAISS index kind [default: mapping.index]."),
    click.option("--cache-dir", default=None, help="Folder for cached indexes [default: mapping.cache_dir]."),
]


def _common_options(function):  # type: ignore[no-untyped-def]
    for option in reversed(_COMMON_OPTIONS):
        function = option(function)
    return function


@click.command("map")
@click.argument("answers", nargs=-1)
@click.option("--taxonomy", default=None, help="Built-in taxonomy name or .json/.csv path [default: mapping.taxonomy].")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Number of ranked classes per answer.")
@click.option("--candidates", default=None, help="Comma-separated class ids or names that restrict the answer.")
@click.option("--options", default=None, help="Comma-separated class ids shown as options A, B, ...; maps letters and option text.")
@click.option("--multilabel", is_flag=True, help="Split list answers and map every item.")
@click.option("--threshold", type=float, default=None, help="Cosine similarity under which an answer is out of list [default: config].")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read one answer per line from standard input as well.")
@_common_options
def map_command(
    answers: tuple[str, ...],
    taxonomy: str | None,
    top_k: int,
    candidates: str | None,
    options: str | None,
    multilabel: bool,
    threshold: float | None,
    from_stdin: bool,
    encoder: str | None,
    index_kind: str | None,
    cache_dir: str | None,
) -> None:
    """Map free-form ANSWERS to taxonomy classes and print one JSON object per answer."""
    texts = list(answers)
    if from_stdin:
        texts += [line.rstrip("\n") for line in sys.stdin]
    if not texts:
        raise click.UsageError("give at least one answer, or --stdin")

    mapper = _build_mapper(taxonomy or str(_mapping_defaults()["taxonomy"]), encoder, index_kind, cache_dir, threshold)
    candidate_ids = None
    if candidates is not None:
        try:
            candidate_ids = mapper.resolve_candidates([item.strip() for item in candidates.split(",") if item.strip()])
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--candidates") from error

    if options is not None:
        option_ids = [item.strip() for item in options.split(",") if item.strip()]
        unknown = [item for item in option_ids if item not in mapper.taxonomy]
        if unknown:
            raise click.BadParameter(f"unknown class id {unknown[0]!r}; options are class ids", param_hint="--options")
        for text in texts:
            click.echo(json.dumps(mapper.map_option(text, option_ids).to_dict(), ensure_ascii=False))
        return

    if multilabel:
        for text in texts:
            items = [result.to_dict() for result in mapper.map_multilabel(text, top_k=top_k, candidates=candidate_ids)]
            click.echo(json.dumps({"answer": text, "objects": items}, ensure_ascii=False))
        return

    for result in mapper.map_batch(texts, top_k=top_k, candidates=candidate_ids):
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))


@click.group("taxonomy")
def taxonomy_group() -> None:
    """Inspect, validate and index taxonomies."""


@taxonomy_group.command("build")
@click.argument("taxonomy")
@_common_options
def taxonomy_build(taxonomy: str, encoder: str | None, index_kind: str | None, cache_dir: str | None) -> None:
    """Build (or verify) the cached FAISS index of TAXONOMY and print its manifest as JSON."""
    import time

    started = time.perf_counter()
    mapper = _build_mapper(taxonomy, encoder, index_kind, cache_dir, None)
    report = {
        "taxonomy": mapper.taxonomy.name,
        "classes": len(mapper.taxonomy),
        "hash": mapper.taxonomy.hash,
        "encoder": mapper.encoder.name,
        "dimension": mapper.encoder.dimension,
        "index": mapper.index_kind,
        "vectors": int(mapper.class_index.faiss_index.ntotal),
        "status": mapper.index_status,
        "seconds": round(time.perf_counter() - started, 2),
    }
    click.echo(json.dumps(report))


@taxonomy_group.command("show")
@click.argument("taxonomy")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True, help="Number of classes to print (0 = all).")
@click.option("--class-id", "class_ids", multiple=True, help="Print only this class; repeatable.")
def taxonomy_show(taxonomy: str, limit: int, class_ids: tuple[str, ...]) -> None:
    """Print a summary of TAXONOMY and its first classes as JSON lines."""
    from mapping import TaxonomyError, load_taxonomy

    try:
        loaded = load_taxonomy(taxonomy)
    except TaxonomyError as error:
        raise click.ClickException(str(error)) from error
    click.echo(json.dumps({"taxonomy": loaded.name, "classes": len(loaded), "hash": loaded.hash, "source": loaded.source}))

    if class_ids:
        try:
            selected = [loaded.by_id(class_id) for class_id in class_ids]
        except KeyError as error:
            raise click.BadParameter(str(error.args[0]), param_hint="--class-id") from error
    else:
        selected = loaded.classes if limit == 0 else loaded.classes[:limit]
    for cls in selected:
        record = {
            "id": cls.id,
            "index": cls.index,
            "name": cls.name,
            "synonyms": list(cls.synonyms),
            "description": cls.description,
            "parents": list(cls.parents),
        }
        click.echo(json.dumps(record, ensure_ascii=False))


@taxonomy_group.command("validate")
@click.argument("paths", nargs=-1, required=True)
def taxonomy_validate(paths: tuple[str, ...]) -> None:
    """Check taxonomy files (or built-in names) and report the first error of each; exit 1 if any is invalid."""
    from mapping import TaxonomyError, load_taxonomy

    failed = False
    for path in paths:
        try:
            loaded = load_taxonomy(path)
        except TaxonomyError as error:
            failed = True
            click.echo(f"INVALID {error}")
            continue
        shared = sum(1 for classes in loaded.names_by_key().values() if len(classes) > 1)
        click.echo(f"OK {path}: {len(loaded)} classes, hash {loaded.hash[:12]}, {shared} names shared by several classes")
    if failed:
        raise SystemExit(1)
