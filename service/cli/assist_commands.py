"""`mllm-classify assist ...`: annotation assist reports and a standalone server."""

from __future__ import annotations

import click


@click.group("assist")
def assist_group() -> None:
    """Annotation assist: acceptance reports over the feedback store, standalone review server."""


@assist_group.command("report")
@click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL of the feedback store; default MLLM_CLASSIFY_ASSIST__DATABASE_URL or sqlite:///var/assist.sqlite3.",
)
@click.option("--target", default=0.95, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Acceptance@1 that the calibration threshold must reach, as a fraction.")
@click.option("--buckets", default=10, show_default=True, type=click.IntRange(1, 100),
              help="Number of equal-width confidence buckets between 0 and 1.")
@click.option("--max-classes", default=20, show_default=True, type=click.IntRange(0),
              help="Classes listed in the text output, most frequent first.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def report_command(database_url: str | None, target: float, buckets: int, max_classes: int, as_json: bool) -> None:
    """Print acceptance@1, acceptance@k, acceptance by confidence bucket and by class."""
    from service.assist.report import build_report, format_report
    from service.assist.settings import AssistSettings
    from service.assist.store import Store

    settings = AssistSettings.from_env()
    store = Store(database_url or settings.database_url)
    try:
        store.migrate()
        report = build_report(store.history(), target=target, num_buckets=buckets)
    finally:
        store.close()

    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(format_report(report, max_classes=max_classes))


@assist_group.command("serve")
@click.option("--model", "model_id", default=None, help="Model id or local path; default from the service config.")
@click.option("--images-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of images for the review page; default MLLM_CLASSIFY_ASSIST__IMAGES_DIR.")
@click.option("--database-url", default=None, help="SQLAlchemy URL of the feedback store.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
def serve_command(model_id: str | None, images_dir: str | None, database_url: str | None, host: str, port: int) -> None:
    """Serve the review page and the Label Studio ML backend without BentoML (one request at a time)."""
    import os

    import uvicorn

    from service.assist.settings import ENV_PREFIX, AssistSettings
    from service.assist.standalone import build_standalone_app
    from service.config import load_config

    # The service config rejects sections it does not define, and the assist
    # variables share its MLLM_CLASSIFY_ prefix, so they are read separately.
    service_environ = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    config = load_config(environ=service_environ)
    if model_id:
        config.model.model_id = model_id
    overrides = {}
    if images_dir:
        overrides["images_dir"] = images_dir
    if database_url:
        overrides["database_url"] = database_url
    settings = AssistSettings.from_env(**overrides)

    app = build_standalone_app(config, settings)
    click.echo(f"review page: http://{host}:{port}/assist/   Label Studio ML backend: http://{host}:{port}/labelstudio")
    uvicorn.run(app, host=host, port=port, log_level="info")


@assist_group.command("migrate")
@click.option("--database-url", default=None, help="SQLAlchemy URL of the feedback store; default as for `report`.")
def migrate_command(database_url: str | None) -> None:
    """Create or upgrade the feedback store's tables to the newest migration."""
    from service.assist.settings import AssistSettings
    from service.assist.store import Store

    store = Store(database_url or AssistSettings.from_env().database_url)
    try:
        store.migrate()
    finally:
        store.close()
    click.echo("feedback store is at the newest migration")
