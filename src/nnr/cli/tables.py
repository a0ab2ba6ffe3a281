"""Plain-text tables and number formats for the CLI's human-readable output."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def cell(value: object) -> str:
    """One table cell: ``-`` for missing values, ``yes``/``no`` for booleans."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (tuple, list)):
        return shape(value)
    return str(value)


def shape(dims: Iterable[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in dims) + "]"


def number(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e6:
        return f"{x:.4g}"
    return f"{x:.3e}"


def size(n: int) -> str:
    """A byte count, exact, with a binary-prefixed approximation when large."""
    if n < 1024:
        return f"{n} B"
    for unit, scale in (("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n} B ({n / scale:.1f} {unit})"
    return f"{n} B"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]],
          right: Iterable[int] = (), indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; the columns in ``right`` are right-aligned."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    right_cols = set(right)

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right_cols else c.ljust(w)
                 for i, (c, w) in enumerate(zip(cells, widths))]
        return (indent + "  ".join(parts)).rstrip()

    return [line(list(headers))] + [line(row) for row in text_rows]
