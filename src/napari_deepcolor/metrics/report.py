"""Reporting metrics: the mean over images and a plain-text table."""

from __future__ import annotations

import numpy as np

from ..errors import DeepColorError


def summarize(rows: list[dict]) -> dict:
    """Mean of every metric over images: ``{'name': 'mean', metric: mean, ...}`` (text entries are left out)."""
    if not rows:
        raise DeepColorError("There are no results to summarize: no image was evaluated.")
    keys = [k for k in rows[0] if k != "name" and all(_is_number(row.get(k)) for row in rows)]
    return {"name": "mean", **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """Rows of metrics as an aligned plain-text table (names left, numbers right).

    A row named ``'mean'`` (from :func:`summarize`) is set off by a rule.

    Examples
    --------
    >>> print(format_table([{"name": "a", "sbd": 0.5, "n_gt": 2}]))
    name    sbd  n_gt
    ----  -----  ----
    a     0.500     2
    """
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if "name" in columns:
        columns.remove("name")
        columns.insert(0, "name")
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(
            v.ljust(w) if c == "name" else v.rjust(w) for v, w, c in zip(values, widths, columns)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(columns), rule]
    for row, values in zip(rows, cells):
        if row.get("name") == "mean" and len(lines) > 2:
            lines.append(rule)
        lines.append(line(values))
    return "\n".join(lines)
