"""Read a table from a CSV or Parquet file into a pandas DataFrame, or say what is wrong."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from noisybayes._checks import name_list

__all__ = ["example_path", "read_table"]

_CSV = {".csv": ",", ".tsv": "\t", ".txt": None}
_PARQUET = (".parquet", ".pq")


def example_path(name: str = "plants") -> Path:
    """The path of a table shipped with noisybayes, ``noisybayes/data/<name>.csv``.

    ``plants``: 120 rows of ``growth ~ water + light + C(soil)``, simulated with growth =
    2 + 1.2 water + 0.5 light + (loam: +2, sand: -1.5) + N(0, 1.5^2) noise.
    ``radon``: 919 homes in 85 Minnesota counties (Gelman & Hill 2007): ``log_radon``,
    ``floor`` (0 basement, 1 first floor), ``county`` (1..85) and the county's ``log_uppm``
    (log uranium), for ``log_radon ~ floor + (1 | county)``.
    """
    folder = Path(str(resources.files("noisybayes") / "data"))
    path = folder / f"{name}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.csv"))
        raise ValueError(f"name must be one of the bundled tables {have}, got {name!r}")
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """The table in ``path``: CSV (``.csv``; ``.tsv`` tab-separated; ``.txt`` delimiter
    sniffed) or Parquet (``.parquet``, ``.pq``, read by pyarrow).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unknown
    extension, an unreadable file, or a table without rows.
    """
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"path must name an existing file, got {str(path)!r} ({what})")
    suffix = path.suffix.lower()
    if suffix not in _CSV and suffix not in _PARQUET:
        kinds = ", ".join([*_CSV, *_PARQUET])
        raise ValueError(f"path must end in one of {kinds}, got {str(path)!r}")
    try:
        if suffix in _PARQUET:
            table = pd.read_parquet(path)
        else:
            sep = _CSV[suffix]
            table = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c")
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"the table in {str(path)!r} must have a header and rows, got an empty file"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"the file {str(path)!r} could not be read as {suffix[1:]}: {first}"
        ) from None
    if len(table) == 0:
        columns = name_list(table.columns)
        raise ValueError(
            f"the table in {str(path)!r} must have at least one row, got none (columns: {columns})"
        )
    return table
