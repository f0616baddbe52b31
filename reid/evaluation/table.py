"""Plain-text tables of retrieval metrics (for the terminal, logs and reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

METRIC_COLUMNS = ("R1", "R5", "R10", "mAP", "mINP")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with columns padded to equal width."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def metrics_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] = METRIC_COLUMNS,
                  digits: int = 2) -> str:
    """One row per entry of ``rows`` (e.g. ``{"t2i": {...}, "i2t": {...}}``), one column per metric."""
    body = [[name, *(f"{values[c]:.{digits}f}" for c in columns)] for name, values in rows.items()]
    return format_table(["task", *columns], body)


def metrics_line(values: Mapping[str, float], columns: Sequence[str] = METRIC_COLUMNS) -> str:
    """``R1 79.6  R5 92.9  R10 96.5  mAP 78.2  mINP 59.0``: the metrics present, in the usual order."""
    return "  ".join(f"{c} {values[c]:.1f}" for c in columns if c in values)


def gallery_mode_lines(values: Mapping[str, float], label: str) -> list[str]:
    """``label`` and the metrics, one line per gallery mode: the gallery fused with its descriptions and the
    same images alone (the ``image_*`` metrics), or one line when the gallery had no descriptions."""
    alone = {k.removeprefix("image_"): v for k, v in values.items() if k.startswith("image_")}
    if not alone:
        return [f"{label}: {metrics_line(values)}"]
    return [f"{label}, gallery with descriptions: {metrics_line(values)}",
            f"{label}, gallery of images alone:   {metrics_line(alone)}"]
