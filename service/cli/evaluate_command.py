"""`mllm-classify evaluate`: run the protocol audit on a dataset and write the report.

Results go to OUT/results.jsonl, one row per image and setting. Rerunning with
the same OUT resumes, and running a second backend into the same OUT adds its
rows, so the report puts both models (an MLLM and the supervised baseline) in
one table. The report (report.json, report.md, PNG plots) is rebuilt from all
rows after every run; `--report-only` rebuilds it without running a model.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path

import click

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
RUNS_FILE = "runs.json"


def _load_runs(out_dir: Path) -> list[dict]:
    path = out_dir / RUNS_FILE
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))


def _save_run(out_dir: Path, run: dict) -> None:
    # One entry per (model, dataset): a resumed run replaces its earlier entry.
    runs = [item for item in _load_runs(out_dir) if (item["model"], item["dataset"]) != (run["model"], run["dataset"])]
    runs.append(run)
    (out_dir / RUNS_FILE).write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


def _build_transport(backend: str, model: str | None, url: str | None, config_path: str | None, api_key_env: str):
    """Return (transport, remapper, config) for the chosen backend."""
    from mapping import load_taxonomy

    from evaluation.remap import Remapper
    from service.config import load_config

    config = load_config(config_path)
    cache_dir = Path(config.mapping.cache_dir).expanduser()

    if backend in ("http", "grpc"):
        if not url:
            raise click.UsageError(f"--backend {backend} needs --url, e.g. http://127.0.0.1:3000 or 127.0.0.1:50051")
        from evaluation.transports import GrpcTransport, HttpTransport

        api_key = os.environ.get(api_key_env) or None
        transport = HttpTransport(url, api_key=api_key) if backend == "http" else GrpcTransport(url, api_key=api_key)
        remapper = Remapper(
            load_taxonomy(config.mapping.taxonomy),
            config.mapping.encoder,
            cache_dir=cache_dir,
            out_of_list_threshold=config.mapping.out_of_list_threshold,
        )
        return transport, remapper, config

    from evaluation.transports import EngineTransport
    from service.engine import Engine

    updates = {"backend": backend}
    if model:
        updates["model_id"] = model
    elif backend == "supervised":
        updates["model_id"] = "efficientnet-lite0"
    config = config.model_copy(update={"model": config.model.model_copy(update=updates)})
    engine = Engine(config)
    mapper = engine.mapper()
    remapper = Remapper(
        mapper.taxonomy,
        config.mapping.encoder,
        default_mapper=mapper,
        cache_dir=cache_dir,
        out_of_list_threshold=config.mapping.out_of_list_threshold,
    )
    return EngineTransport(engine), remapper, config


def _load_encoders(remapper, settings) -> None:  # noqa: ANN001 - Remapper, list[Setting]
    """Build every encoder's mapper before the first image, so a missing encoder fails fast."""
    from mapping import EncoderError

    from evaluation.encoders import SECOND_ENCODER

    for encoder in dict.fromkeys(setting.encoder for setting in settings if setting.mapping == "embedding"):
        try:
            remapper.mapper(encoder)
        except EncoderError as error:
            hint = (
                f" Assemble {SECOND_ENCODER} offline as described in `python -m evaluation.encoders --help`."
                if encoder == SECOND_ENCODER
                else ""
            )
            raise click.ClickException(f"{error}.{hint}") from error


@click.command("evaluate")
@click.option("--dataset", required=True, help="`bundled`, an image folder (one subfolder per class), a .jsonl manifest, or an ImageNet val folder with --labels.")
@click.option("--labels", "labels_path", default=None, help="ImageNet val labels: ReaL real.json, a CSV with proposed_labels, or one class index per line.")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N images.")
@click.option(
    "--backend",
    type=click.Choice(["transformers", "supervised", "openai", "http", "grpc"]),
    default="transformers",
    show_default=True,
    help="In-process backend, or a running service over HTTP or gRPC.",
)
@click.option("--model", default=None, help="Model id or local folder for in-process backends (default: the config's).")
@click.option("--url", default=None, help="Service address: http://127.0.0.1:3000 for http, 127.0.0.1:50051 for grpc.")
@click.option(
    "--grid",
    "grid_path",
    default="quick",
    show_default=True,
    help="Grid YAML file, or a bundled grid: quick, audit (MLLMs), supervised.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for results.jsonl and the report.")
@click.option("--config", "config_path", default=None, help="Service config YAML (default: service/config.yaml plus env overrides).")
@click.option("--api-key-env", default="MLLM_CLASSIFY_API_KEY", show_default=True, help="Environment variable with the service API key.")
@click.option("--title", default="Evaluation report", show_default=True, help="Title of report.md.")
@click.option("--report-only", is_flag=True, help="Rebuild the report from OUT/results.jsonl without running a model.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def evaluate_command(
    dataset: str,
    labels_path: str | None,
    limit: int | None,
    backend: str,
    model: str | None,
    url: str | None,
    grid_path: str,
    out_dir: str,
    config_path: str | None,
    api_key_env: str,
    title: str,
    report_only: bool,
    no_progress: bool,
) -> None:
    """Evaluate a model over a grid of protocol settings and write JSON, Markdown and PNG plots."""
    from evaluation.datasets import DatasetError, load_dataset
    from evaluation.grid import GridError, load_grid
    from evaluation.report import Report, RunInfo, write_report
    from evaluation.runner import Runner
    from evaluation.scoring import score_rows
    from evaluation.store import ResultStore, read_rows

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE

    try:
        settings = load_grid(grid_path).expand()
    except GridError as error:
        raise click.ClickException(str(error)) from error

    if not report_only:
        try:
            data = load_dataset(dataset, labels=labels_path, limit=limit)
        except DatasetError as error:
            raise click.ClickException(str(error)) from error

        transport, remapper, config = _build_transport(backend, model, url, config_path, api_key_env)
        try:
            _load_encoders(remapper, settings)
            with ResultStore(results_path) as store:
                runner = Runner(transport, remapper, store, taxonomy_name=None, progress=not no_progress)
                summary = runner.run(data, settings)
            run = RunInfo(
                dataset=data.name,
                dataset_description=data.description,
                images=len(data),
                dropped_images=data.num_dropped(),
                backend=backend,
                model=runner.model,
                transport=transport.name,
                created_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                results_file=RESULTS_FILE,
                extra={
                    "settings": str(len(settings)),
                    "default encoder": config.mapping.encoder,
                    # Timings are only comparable between runs on an otherwise idle machine.
                    "CPU load average at the end (1 min)": f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
                },
            )
            _save_run(out, run.model_dump())
        finally:
            transport.close()
        click.echo(
            f"{summary.written} rows written, {summary.skipped} already present, "
            f"{summary.errors} errors, {summary.dropped} dropped images"
        )

    if not results_path.exists():
        raise click.ClickException(f"{results_path} not found; run without --report-only first")
    scores = score_rows(read_rows(results_path), settings)
    runs = [RunInfo.model_validate(item) for item in _load_runs(out)]
    paths = write_report(Report(runs=runs, scores=scores), out, title=title)

    for score in scores.settings:
        value = score.multilabel.value
        shown = "n/a" if value is None else f"{100 * value:.1f}%"
        click.echo(f"{score.setting:<70} multilabel {shown:>7}  ({score.multilabel.correct}/{score.multilabel.total})")
    click.echo(f"report: {paths['markdown']}")
