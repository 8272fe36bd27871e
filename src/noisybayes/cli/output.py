"""What the command writes: tables on the terminal or as plain text, strict JSON, and the
checks, before any work, that every output file can be written without losing a file."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

__all__ = ["check_outputs", "print_table", "write_json"]


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


def _check_output(flag: str, path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """Raise unless ``path`` can be written: a file name (not a folder) in an existing,
    writable folder, ending in one of ``suffixes`` when any are given."""
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"{flag} must name a file, got {str(path)!r} (a directory)")
    if not folder.is_dir():
        raise ValueError(
            f"{flag} must name a file in an existing folder, got {str(path)!r} "
            f"(no folder {str(folder)!r})"
        )
    if not os.access(folder, os.W_OK):
        raise ValueError(
            f"{flag} must name a file in a writable folder, got {str(path)!r} "
            f"(cannot write in {str(folder)!r})"
        )
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(
            f"{flag} must end in one of {', '.join(suffixes)}, "
            f"got {str(path)!r}"
        )


def _figure_suffixes() -> tuple[str, ...]:
    """The file types matplotlib can write (``.png``, ``.pdf``, ``.svg``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(f".{kind}" for kind in FigureCanvasBase.get_supported_filetypes())


# the output flags of both commands: (flag, attribute), the figure's needing a known suffix
_OUTPUTS = (("--out", "out"), ("--json", "json"), ("--plot", "plot"))


def check_outputs(args: argparse.Namespace, inputs: dict[str, Path | None]) -> None:
    """Raise unless every output flag given (``--out``, ``--json``, ``--plot``) can be
    written (:func:`_check_output`) without losing a file: never one of the ``inputs`` (a
    flag or argument name and the table it reads), never one file for two flags, and no
    existing file unless ``args.force``."""
    read = {path.resolve(): name for name, path in inputs.items() if path is not None}
    written: dict[Path, str] = {}
    for flag, key in _OUTPUTS:
        path = getattr(args, key, None)
        if path is None:
            continue
        _check_output(flag, path, _figure_suffixes() if key == "plot" else ())
        target = path.resolve()
        if target in read:
            raise ValueError(f"{flag} must not name the table it reads as {read[target]}, "
                             f"got {str(path)!r}")
        if target in written:
            raise ValueError(f"{flag} must name another file than {written[target]}, got "
                             f"{str(path)!r} for both")
        written[target] = flag
        if path.exists() and not args.force:
            raise ValueError(f"{flag} must not name an existing file unless --force is given "
                             f"(to replace it), got {str(path)!r}")
