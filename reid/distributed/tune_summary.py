"""A finished search, summarised: one row per trial sorted by the metric (CSV and Markdown) and a PNG of the
searched parameters against the metric."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

COMPLETED, STOPPED, ERROR = "completed", "stopped early", "error"


@dataclass(frozen=True)
class TrialRow:
    """One trial: its searched values, the best value of the metric over its epochs, epochs run, status, how
    many times its training went on from a checkpoint after a failure (``retries``: its worker group restarted
    by Ray Train or the trial started again by Ray Tune), and for a trial that errored the line that says why."""

    trial_id: str
    params: Mapping[str, Any]
    metric: float | None
    epochs: int
    status: str
    run_id: str | None = None
    error: str | None = None
    retries: int = 0


def error_line(error: BaseException | str | None, limit: int = 200) -> str | None:
    """The line of an error's text that names it (``ValueError: ...``, the last such line of a traceback Ray
    wraps around a trial's failure), else its first line; at most ``limit`` characters."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else None
    named = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*:", line)]
    line = named[-1] if named else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def sort_rows(rows: Sequence[TrialRow], mode: str) -> list[TrialRow]:
    """Best first (``mode`` ``max`` or ``min``); trials without a value last, then by trial id."""
    def key(row: TrialRow) -> tuple[int, float, str]:
        if row.metric is None or math.isnan(row.metric):
            return (1, 0.0, row.trial_id)
        return (0, -row.metric if mode == "max" else row.metric, row.trial_id)

    return sorted(rows, key=key)


def _header(keys: Sequence[str], metric: str) -> list[str]:
    return ["rank", "trial_id", *keys, metric, "epochs", "status", "retries", "mlflow_run_id", "error"]


def _cells(rank: int, row: TrialRow, keys: Sequence[str], exact: bool = False) -> list[str]:
    """Table cells; ``exact`` keeps full float precision (CSV), else 4 significant digits (Markdown)."""
    def fmt(value: Any) -> str:
        return repr(value) if exact and isinstance(value, float) else format_value(value)

    metric = "" if row.metric is None else fmt(row.metric)
    values = [fmt(row.params.get(k, "")) for k in keys]
    return [str(rank), row.trial_id, *values, metric, str(row.epochs), row.status, str(row.retries), row.run_id or "",
            row.error or ""]


def format_value(value: Any) -> str:
    """Floats to 4 significant digits; mappings and lists compactly; everything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def to_csv(rows: Sequence[TrialRow], keys: Sequence[str], metric: str) -> str:
    """The sorted rows as CSV (``rows`` already in rank order), floats at full precision."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_header(keys, metric))
    for rank, row in enumerate(rows, 1):
        writer.writerow(_cells(rank, row, keys, exact=True))
    return out.getvalue()


def to_markdown(rows: Sequence[TrialRow], keys: Sequence[str], metric: str) -> str:
    """The sorted rows as a Markdown table (``|`` inside values escaped)."""
    lines = ["| " + " | ".join(_header(keys, metric)) + " |", "|" + "---|" * len(_header(keys, metric))]
    for rank, row in enumerate(rows, 1):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(rank, row, keys)) + " |")
    return "\n".join(lines) + "\n"


def plot_params(rows: Sequence[TrialRow], keys: Sequence[str], metric: str, path: str | Path,
                log_keys: Sequence[str] = ()) -> None:
    """One scatter panel per searched key: its value (log axis for ``log_keys``, categories in order of
    first appearance) against the metric; completed trials filled, stopped or failed ones hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(max(len(keys), 1), 4)
    nrows = math.ceil(max(len(keys), 1) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False)
    scored = [r for r in rows if r.metric is not None and not math.isnan(r.metric)]
    for ax, key in zip(axes.flat, keys, strict=False):
        xs, ticks = _positions([r.params.get(key) for r in scored])
        for done in (True, False):
            pts = [(x, r.metric) for x, r in zip(xs, scored, strict=True) if (r.status == COMPLETED) == done]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=36, edgecolors="C0",
                           facecolors="C0" if done else "none", label=COMPLETED if done else "stopped / error")
        if ticks:
            ax.set_xticks(range(len(ticks)), ticks, rotation=30, ha="right", fontsize=7)
        elif key in log_keys:
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if scored:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"searched parameters against {metric}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _positions(values: Sequence[Any]) -> tuple[list[float], list[str]]:
    """Numbers stay numbers; anything else (strings, bools, dicts) becomes a category index."""
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], []
    labels: list[str] = []
    for v in values:
        if format_value(v) not in labels:
            labels.append(format_value(v))
    return [float(labels.index(format_value(v))) for v in values], labels


def write_summary(directory: str | Path, rows: Sequence[TrialRow], keys: Sequence[str], metric: str,
                  best_config_yaml: str | None = None, best_overrides: Mapping[str, Any] | None = None,
                  log_keys: Sequence[str] = ()) -> list[Path]:
    """``summary.csv``, ``summary.md``, ``params_vs_metric.png`` and, when there is a best trial,
    ``best_config.yaml`` (its whole resolved config) and ``best_overrides.yaml`` (its dotted overrides of the
    searched config, ready for ``--set``)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "summary.csv", out / "summary.md"]
    files[0].write_text(to_csv(rows, keys, metric))
    files[1].write_text(to_markdown(rows, keys, metric))
    if best_config_yaml is not None:
        files.append(out / "best_config.yaml")
        files[-1].write_text(best_config_yaml)
    if best_overrides is not None:
        files.append(out / "best_overrides.yaml")
        files[-1].write_text(yaml.safe_dump(dict(best_overrides), sort_keys=False))
    files.append(out / "params_vs_metric.png")
    plot_params(rows, keys, metric, files[-1], log_keys)
    return files
