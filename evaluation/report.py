"""Write scores as JSON, a Markdown report and PNG plots.

Plots use matplotlib's Agg backend, so they render without a display.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from evaluation.scoring import Accuracy, Comparison, ReplicateGroup, Scores, SettingScore


class RunInfo(BaseModel):
    """Provenance of one model's rows: dataset, backend, model and run time."""

    dataset: str
    dataset_description: str = ""
    images: int
    dropped_images: int
    backend: str
    model: str
    transport: str
    created_at: str
    results_file: str
    extra: dict[str, str] = Field(default_factory=dict)


class Report(BaseModel):
    """Everything `report.json` contains: run info per model plus the scores of all of them."""

    runs: list[RunInfo]
    scores: Scores


def _cell(text: str) -> str:
    # Setting names of several models read "model | setting"; a bare pipe would split the Markdown cell.
    return text.replace("|", "\\|")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _accuracy_cell(value: Accuracy) -> str:
    if value.value is None:
        return "n/a"
    return f"{100 * value.value:.1f} ({value.correct}/{value.total})"


def _delta(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}"


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def settings_table(scores: Sequence[SettingScore]) -> list[str]:
    lines = [
        "| setting | images | dropped | single-label top-1 % | multilabel % | multilabel, out-of-list discarded % "
        "| out-of-list % | abstain % | 95% interval (multilabel) | ms / image | images / s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for score in scores:
        interval = (
            f"{_percent(score.multilabel.low)}-{_percent(score.multilabel.high)}" if score.multilabel.value is not None else "n/a"
        )
        per_image = (1000 / score.images_per_second) if score.images_per_second else None
        lines.append(
            f"| {_cell(score.setting)} | {score.rows - score.errors} | {score.dropped} | {_accuracy_cell(score.single_label)} "
            f"| {_accuracy_cell(score.multilabel)} | {_accuracy_cell(score.multilabel_discard_out_of_list)} "
            f"| {_percent(score.out_of_list_rate)} | {_percent(score.abstain_rate)} | {interval} "
            f"| {_number(per_image)} | {_number(score.images_per_second, 2)} |"
        )
    return lines


def comparison_table(comparison: Comparison) -> list[str]:
    lines = [
        f"#### {comparison.title}",
        "",
        "| variant | setting | multilabel % | single-label % | change vs first (points) | out-of-list % |",
        "|---|---|---|---|---|---|",
    ]
    for row in comparison.rows:
        lines.append(
            f"| {_cell(row.variant)} | {_cell(row.setting)} | {_percent(row.multilabel)} | {_percent(row.single_label)} "
            f"| {_delta(row.delta_vs_first)} | {_percent(row.out_of_list_rate)} |"
        )
    return lines


def replicate_table(group: ReplicateGroup) -> list[str]:
    lines = [
        f"#### Batch size and image order: {_cell(group.group)}",
        "",
        f"Mean agreement between all pairs of runs: {_percent(group.mean_pairwise_agreement)}%; "
        f"accuracy range: {_delta(group.accuracy_range)} points.",
        "",
        "| batch size | order seed | multilabel % | change vs reference (points) | same prediction as reference % "
        "| ms / image (batch wall time) | images / s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in group.rows:
        per_image = (1000 / row.images_per_second) if row.images_per_second else None
        lines.append(
            f"| {row.batch_size} | {row.order_seed if row.order_seed is not None else 'dataset order'} "
            f"| {_percent(row.multilabel)} | {_delta(row.delta_vs_reference)} | {_percent(row.agreement_with_reference)} "
            f"| {_number(per_image)} | {_number(row.images_per_second, 2)} |"
        )
    return lines


def render_markdown(report: Report, plots: Sequence[str], title: str = "Evaluation report") -> str:
    """Render the report as Markdown with every comparison side by side."""
    lines = [f"# {title}", ""]
    for run in report.runs:
        lines.append(
            f"- **{run.model}** ({run.backend}, {run.transport}) on **{run.dataset}**: {run.images} images, "
            f"{run.dropped_images} without a valid label (dropped from multilabel scores); "
            f"results in `{run.results_file}`, run {run.created_at}."
        )
        if run.dataset_description:
            lines.append(f"  Dataset: {run.dataset_description}.")
        for name, value in run.extra.items():
            lines.append(f"  {name}: {value}.")
    lines += [
        "",
        "Single-label top-1 counts a prediction correct only when it equals the first (original) label;",
        "multilabel counts it correct when it is any label of the image. Out-of-list answers (no class",
        "close enough, or an abstention) count as wrong unless the column says they are discarded.",
        "Intervals are 95% Wilson score intervals.",
        "",
        "## All settings",
        "",
        *settings_table(report.scores.settings),
        "",
    ]
    if report.scores.comparisons:
        lines += ["## Side-by-side comparisons", ""]
        for comparison in report.scores.comparisons:
            lines += [*comparison_table(comparison), ""]
    if report.scores.replicates:
        lines += ["## Batch size and image order", ""]
        for group in report.scores.replicates:
            lines += [*replicate_table(group), ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{Path(plot).stem}]({Path(plot).name})" for plot in plots]
        lines.append("")
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def plot_accuracy_by_setting(scores: Sequence[SettingScore], path: Path) -> Path:
    """Draw horizontal bars per setting: single-label, multilabel, and multilabel with out-of-list discarded."""
    pyplot = _pyplot()
    names = [score.setting for score in scores]
    series = [
        ("single-label top-1", [score.single_label.value for score in scores], "#9e9e9e"),
        ("multilabel", [score.multilabel.value for score in scores], "#1f77b4"),
        ("multilabel, out-of-list discarded", [score.multilabel_discard_out_of_list.value for score in scores], "#ff7f0e"),
    ]
    height = 0.26
    figure, axes = pyplot.subplots(figsize=(10, 1.0 + 0.55 * len(names)))
    for offset, (label, values, color) in enumerate(series):
        positions = [index + (offset - 1) * height for index in range(len(names))]
        axes.barh(positions, [100 * (value or 0.0) for value in values], height=height, label=label, color=color)
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("accuracy (%)")
    axes.set_title("Accuracy by setting")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def plot_batch_size(groups: Sequence[ReplicateGroup], path: Path) -> Path | None:
    """Draw batch size against accuracy and per-image wall time, one line per replicate group."""
    lines = []
    for group in groups:
        points = sorted((row.batch_size, row) for row in group.rows if row.order_seed is None)
        if len({size for size, _ in points}) > 1:
            lines.append((group.group, points))
    if not lines:
        return None

    pyplot = _pyplot()
    figure, (accuracy_axes, latency_axes) = pyplot.subplots(1, 2, figsize=(11, 4))
    for name, points in lines:
        sizes = [size for size, _ in points]
        accuracy_axes.plot(sizes, [100 * (row.multilabel or 0.0) for _, row in points], marker="o", label=name)
        latency = [1000 / row.images_per_second if row.images_per_second else float("nan") for _, row in points]
        latency_axes.plot(sizes, latency, marker="o", label=name)
    all_sizes = sorted({size for _, points in lines for size, _ in points})
    for axes in (accuracy_axes, latency_axes):
        axes.set_xscale("log", base=2)
        axes.set_xticks(all_sizes)
        axes.set_xticklabels([str(size) for size in all_sizes])
        axes.minorticks_off()
        axes.set_xlabel("batch size (images)")
        axes.grid(alpha=0.3)
    accuracy_axes.set_ylabel("multilabel accuracy (%)")
    accuracy_axes.set_ylim(0, 100)
    accuracy_axes.set_title("Accuracy by batch size")
    latency_axes.set_ylabel("batch wall time per image (ms)")
    latency_axes.set_title("Latency by batch size")
    latency_axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def write_report(report: Report, out_dir: str | Path, title: str = "Evaluation report") -> dict[str, Path]:
    """Write report.json, report.md and the PNG plots into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    plots = [plot_accuracy_by_setting(report.scores.settings, out_dir / "accuracy_by_setting.png")]
    batch_plot = plot_batch_size(report.scores.replicates, out_dir / "batch_size.png")
    if batch_plot is not None:
        plots.append(batch_plot)
    for plot in plots:
        paths[plot.stem] = plot

    paths["json"] = out_dir / "report.json"
    paths["json"].write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text(render_markdown(report, [str(plot) for plot in plots], title), encoding="utf-8")
    return paths
