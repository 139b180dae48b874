"""The `mllm-classify` command line.

Each command group lives in its own module and imports heavy libraries
(torch, faiss, bentoml) inside its functions, so `mllm-classify --help` stays fast
and `mllm-classify map` never imports BentoML.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

# (module, attribute) of every top-level command; a module missing from an
# install (an optional extra) drops its command instead of breaking the CLI.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("service.cli.mapping_commands", "map_command"),
    ("service.cli.mapping_commands", "taxonomy_group"),
    ("service.cli.model_commands", "build_models_command"),
    ("service.cli.classify_command", "classify_command"),
    ("service.cli.evaluate_command", "evaluate_command"),
    ("service.cli.loadtest_commands", "loadtest_group"),
    ("service.cli.bench_commands", "bench_group"),
    ("service.cli.assist_commands", "assist_group"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="WARNING", show_default=True, help="Logging level for library and CLI messages.")
def main(log_level: str) -> None:
    """Classify images with multimodal LLMs and map their answers to taxonomy classes."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _register_commands() -> None:
    for module_name, attribute in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        main.add_command(getattr(module, attribute))


_register_commands()
