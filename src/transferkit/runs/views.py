"""Text views of run-index entries (:mod:`.index`): the ``runs list`` table and the ``runs compare`` table, as
aligned text, Markdown or JSON. Pure functions of the entries."""
from __future__ import annotations

import json
from typing import Any

from .index import lookup

LIST_FIELDS = ("name", "kind", "created", "backbone", "strategy")
DEFAULT_METRICS = ("macro_f1", "accuracy")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render(header: list[str], rows: list[list[str]], fmt: str) -> str:
    """Rows as an aligned text table or a Markdown table."""
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt_row = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt_row(header), fmt_row(["-" * w for w in widths])] + [fmt_row(r) for r in rows])


def list_view(entries: list[dict[str, Any]], metrics: list[str], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(entries, indent=1, default=str)
    header = list(LIST_FIELDS) + metrics
    rows = [[_cell(lookup(e, k)) for k in header] for e in entries]
    return render(header, rows, fmt)


def _differs(values: list[Any]) -> bool:
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def compare_view(entries: list[dict[str, Any]], only_changed: bool = False, fmt: str = "text") -> str:
    """Settings and metrics of the runs side by side; metrics of the 2nd.. runs with their difference to the
    first run; ``only_changed``: just the keys whose values differ."""
    settings = sorted({k for e in entries for k in e["settings"]})
    metrics = sorted({k for e in entries for k in e["metrics"]})
    if fmt == "json":
        rows = {k: [e["settings"].get(k) for e in entries] for k in settings}
        rows.update({k: [e["metrics"].get(k) for e in entries] for k in metrics})
        if only_changed:
            rows = {k: v for k, v in rows.items() if _differs(v)}
        return json.dumps({"runs": [e["name"] for e in entries], "rows": rows}, indent=1, default=str)
    header = ["key"] + [e["name"] for e in entries]
    rows = []
    for k in settings:
        vals = [e["settings"].get(k) for e in entries]
        if not only_changed or _differs(vals):
            rows.append([k] + [_cell(v) for v in vals])
    for k in metrics:
        vals = [e["metrics"].get(k) for e in entries]
        if only_changed and not _differs(vals):
            continue
        first = vals[0]
        cells = [_cell(first)]
        for v in vals[1:]:
            diff = f" ({v - first:+.4f})" if isinstance(v, float) and isinstance(first, float) and v != first else ""
            cells.append(_cell(v) + diff)
        rows.append([f"metric: {k}"] + cells)
    return render(header, rows, fmt)
