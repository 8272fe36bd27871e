"""``Parquet`` and ``CSV``: open files with ``pyarrow.dataset``, check the columns, count rows.

A path is a file, a directory (read recursively; ``key=value`` folders become columns) or a
glob (``data/*.parquet``). The columns are checked against the schema before any row is
read. Parquet's row count comes from the files' metadata, a row group being the unit a
pass shuffles; a CSV file is counted in one reading pass and is its own unit.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Literal

import torch

from noisybayes._checks import check_positive_int, name_list
from noisybayes.data.files import FileSource, Piece

__all__ = ["CSV", "Parquet", "open_dataset", "pieces_of"]

Columns = list[str] | tuple[list[str], ...]


def Parquet(path_or_glob: str | Path, x: Columns, y: str, *, buffer_rows: int = 65_536,
            dtype: torch.dtype | None = None) -> FileSource:
    """A :class:`~noisybayes.data.FileSource` over Parquet files.

    Args:
        path_or_glob: a file, a directory or a glob pattern.
        x: the input columns stacked into one ``(B, len(x))`` tensor, or a tuple of such
            lists for a ``forward`` with several inputs.
        y: the target column.
        buffer_rows: rows shuffled together in a pass (and read at a time); memory grows
            with it, not with the data.
        dtype: the tensors' float type; by default float64 when a chosen column holds
            numbers float32 does not (float64, or integers wider than 16 bits: int64 values
            above 2^24 would round, where in memory they are float64), else torch's default
            dtype.
    """
    return _open(path_or_glob, "parquet", x, y, buffer_rows, dtype)


def CSV(path_or_glob: str | Path, x: Columns, y: str, *, buffer_rows: int = 65_536,
        dtype: torch.dtype | None = None) -> FileSource:
    """A :class:`~noisybayes.data.FileSource` over CSV files (a header row, comma-separated);
    the arguments are :func:`Parquet`'s. The rows are counted in one pass when it is built."""
    return _open(path_or_glob, "csv", x, y, buffer_rows, dtype)


def _open(path_or_glob: str | Path, file_format: Literal["parquet", "csv"], x: Columns, y: str,
          buffer_rows: int, dtype: torch.dtype | None) -> FileSource:
    _pyarrow_dataset()  # pyarrow first: its absence is the first thing to say
    buffer_rows = check_positive_int("buffer_rows", buffer_rows)
    if dtype not in (None, torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32, torch.float64 or None, got {dtype!r}")
    inputs = _input_columns(x)
    if not isinstance(y, str):
        raise TypeError(f"y must be a column name (a str), got {y!r}")
    dataset = open_dataset(path_or_glob, file_format)
    schema = dataset.schema
    columns = [name for names in inputs for name in names]
    _check_columns("x", columns, schema)
    _check_columns("y", [y], schema)
    pieces = pieces_of(dataset, file_format, [*columns, y])
    n_data = sum(piece.n_rows for piece in pieces)
    if n_data == 0:
        raise ValueError(f"path_or_glob must name files with rows, got {str(path_or_glob)!r} "
                         "(no rows)")
    if dtype is None:
        wide = [name for name in (*columns, y) if _wider_than_float32(schema.field(name).type)]
        dtype = torch.float64 if wide else torch.get_default_dtype()
    return FileSource(pieces, schema, inputs, y, n_data, dtype, buffer_rows)


def _wider_than_float32(arrow_type: Any) -> bool:
    """Whether a column of ``arrow_type`` holds numbers float32 would round: float64, or
    integers of more than 16 bits."""
    import pyarrow as pa  # present: _open asked _pyarrow_dataset first

    return bool(pa.types.is_float64(arrow_type)
                or (pa.types.is_integer(arrow_type) and arrow_type.bit_width > 16))


def open_dataset(path_or_glob: str | Path, file_format: Literal["parquet", "csv"]) -> Any:
    """The ``pyarrow.dataset`` of a file, a directory or a glob (``key=value`` folders as
    columns); a missing path or an unreadable file is an error naming ``path_or_glob``."""
    dataset_module = _pyarrow_dataset()
    paths = _paths(path_or_glob)
    try:
        return dataset_module.dataset(paths, format=file_format, partitioning="hive")
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"path_or_glob {str(path_or_glob)!r} could not be read as "
                         f"{file_format}: {_first_line(error)}") from None


def _pyarrow_dataset() -> Any:
    try:
        import pyarrow.dataset
    except ImportError as error:
        raise ImportError("noisybayes.data reads files with pyarrow: pip install "
                          "'noisybayes[cli]'") from error
    return pyarrow.dataset


def _input_columns(x: Any) -> tuple[tuple[str, ...], ...]:
    """``x`` as a tuple of column-name tuples, one per input of ``forward``."""
    one_input = isinstance(x, (list, tuple)) and all(isinstance(name, str) for name in x)
    groups = [x] if one_input else x
    if not isinstance(groups, (list, tuple)) or not groups or not all(
        isinstance(g, (list, tuple)) and g and all(isinstance(n, str) for n in g) for g in groups
    ):
        raise TypeError(f"x must be a non-empty list of column names, or a tuple of such lists "
                        f"(one per input), got {x!r}")
    return tuple(tuple(g) for g in groups)


def _paths(path_or_glob: str | Path) -> str | list[str]:
    """The files a glob matches, or the path itself (a file, a directory or a URI)."""
    text = str(path_or_glob)
    if any(c in text for c in "*?[") and "://" not in text:
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise FileNotFoundError(f"path_or_glob must match files, got {text!r} (no match)")
        return matches
    if "://" not in text and not Path(text).exists():
        raise FileNotFoundError(f"path_or_glob must name an existing file or directory, "
                                f"got {text!r}")
    return text


def _check_columns(argument: str, names: list[str], schema: Any) -> None:
    unknown = [name for name in names if name not in schema.names]
    if unknown:
        raise ValueError(f"{argument} must name columns of the data, got unknown "
                         f"{name_list(unknown)}; the columns are {name_list(schema.names)}")
    for name in names:
        kind = schema.field(name).type
        if not _numeric(kind):
            raise TypeError(f"{argument} must name numeric columns, got {name!r} of type {kind}")


def pieces_of(dataset: Any, file_format: str, columns: list[str], *, numeric: bool = True
              ) -> list[Piece]:
    """Row groups (Parquet, counted from the metadata) or whole files (CSV, counted by
    reading), in storage order, without empty ones; each file checked first to hold
    ``columns`` (numeric ones, when ``numeric``)."""
    pieces = []
    for fragment in dataset.get_fragments():
        _check_file(fragment, columns, numeric)
        if file_format == "parquet":
            for group in fragment.split_by_row_group():
                n_rows = group.row_groups[0].num_rows
                pieces.append(Piece(group, fragment.path, 0, n_rows))
        else:
            pieces.append(Piece(fragment, fragment.path, 0, fragment.count_rows()))
    return [piece for piece in pieces if piece.n_rows]


def _check_file(fragment: Any, columns: list[str], numeric: bool) -> None:
    """Refuse a file without one of ``columns`` or with a non-numeric one (the dataset's
    schema is the first file's; another file may differ). Folder keys (``key=value``) are
    columns of every file in the folder."""
    from pyarrow import dataset

    schema = fragment.physical_schema
    keys = dataset.get_partition_keys(fragment.partition_expression)
    missing = [name for name in columns if name not in schema.names and name not in keys]
    if missing:
        raise ValueError(f"every file must have the columns of x and y, got {fragment.path!r} "
                         f"without {name_list(missing)}")
    for name in columns if numeric else ():
        kind = schema.field(name).type if name in schema.names else None
        if kind is not None and not _numeric(kind):
            raise TypeError(f"x and y must name numeric columns in every file, got {name!r} of "
                            f"type {kind} in {fragment.path!r}")


def _numeric(kind: Any) -> bool:
    from pyarrow import types

    return types.is_integer(kind) or types.is_floating(kind) or types.is_boolean(kind)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
