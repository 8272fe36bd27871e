"""What the command writes: tables on the terminal or as plain text, and strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

__all__ = ["print_table", "write_json"]


def print_table(frame: pd.DataFrame, out: TextIO, title: str | None = None) -> None:
    """``frame`` as a rich table on a terminal, as plain aligned text otherwise."""
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        table.add_column(str(frame.index.name or ""))
        for col in frame.columns:
            table.add_column(str(col), justify="right")
        for idx, row in frame.iterrows():
            table.add_row(str(idx), *(_fmt(v) for v in row))
        Console(file=out).print(table)
        return
    if title:
        print(title, file=out)
    print(frame.to_string(float_format=_fmt, na_rep=""), file=out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_json(path: Path, record: Any) -> None:
    """``record`` as strict JSON: NaN and infinities become ``null``."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(record), indent=2, allow_nan=False))
