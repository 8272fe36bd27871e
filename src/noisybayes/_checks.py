"""Validation at the boundary: turn user data into tensors or say exactly what is wrong.

Every message names the argument, the rule and the offending value, in the form
``"<name> must be <rule>, got <value>"``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "as_float_tensor",
    "check_bool",
    "check_choice",
    "check_finite",
    "check_label_types",
    "check_numeric_columns",
    "check_positive",
    "check_positive_int",
    "is_integer",
    "is_number",
    "name_list",
]


def check_numeric_columns(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` if all its columns are numeric, else raise naming the others."""
    bad = [str(c) for c, t in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if bad:
        raise TypeError(f"{name} must have numeric columns only, got non-numeric {bad}")
    return frame


def _to_numpy_like(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, pd.DataFrame):
        value = check_numeric_columns(name, value).to_numpy(dtype=np.float64)
    elif isinstance(value, pd.Series):
        if not pd.api.types.is_numeric_dtype(value.dtype):
            raise TypeError(f"{name} must be numeric, got dtype {value.dtype}")
        value = value.to_numpy(dtype=np.float64)
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise TypeError(f"{name} must be numeric, got an array of dtype {array.dtype}")
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # e.g. a pandas view: torch needs memory it may own
        array = array.copy()
    return torch.from_numpy(array)


def as_float_tensor(
    name: str,
    value: Any,
    *,
    ndim: tuple[int, ...] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Convert ``value`` (tensor, numpy array, pandas object, list) to a finite float tensor.

    Integer and boolean input becomes ``torch.get_default_dtype()`` unless ``dtype`` is given;
    float input keeps its precision unless ``dtype`` is given; half precision (float16,
    bfloat16) is refused unless ``dtype`` converts it.
    """
    tensor = _to_numpy_like(name, value)
    if tensor.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {tensor.dtype}")
    if dtype is None and tensor.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"{name} must be float32 or float64, got {tensor.dtype}: half precision cannot "
            f"resolve a log-density and its gradients. Convert it with .float() or .double()"
        )
    if dtype is not None:
        tensor = tensor.to(dtype)
    elif not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if ndim is not None and tensor.ndim not in ndim:
        wanted = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {wanted}, got shape {tuple(tensor.shape)}")
    if tensor.ndim > 0 and tensor.shape[0] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(tensor.shape)}")
    return check_finite(name, tensor)


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Return ``tensor`` if its values are finite, else raise naming the first NaN/inf."""
    if not tensor.is_floating_point():
        return tensor
    flat = tensor.reshape(-1)
    if all(bool(torch.isfinite(c).all()) for c in flat.split(1 << 22)):  # bounded temporaries
        return tensor
    bad = ~torch.isfinite(tensor)
    first = tuple(int(i) for i in bad.nonzero()[0])
    raise ValueError(
        f"{name} must be finite, got {int(bad.sum())} NaN/inf value(s), the first "
        f"{tensor[first].item()!r} at index {first}"
    )


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number: Python's or numpy's (``np.float32(0.5)``,
    ``np.int64(2)``, as from ``np.arange``), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer, Python's or numpy's, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number > 0."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number > 0, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_probability(name: str, value: float) -> float:
    """Return ``value`` if it is a number strictly between 0 and 1."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def check_seed(value: Any) -> int | None:
    """Return ``value`` if it is ``None`` or an integer that seeds a ``torch.Generator``:
    ``0 <= seed < 2**64``."""
    if value is None:
        return None
    if not is_integer(value):
        raise TypeError(f"seed must be an integer in [0, 2**64) or None, got {value!r}")
    if not 0 <= value < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64) or None, got {value!r}")
    return int(value)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_device(name: str, value: Any) -> torch.device:
    """``value`` as a ``torch.device`` on which this torch build can hold tensors (not
    ``"meta"``, which holds no values; ``None``, where tensors are made: the CPU), else a
    ``ValueError`` naming it and torch's reason."""
    if value is None:
        return torch.device("cpu")
    try:
        device = torch.device(value)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"{name} must be a device this torch build can use (e.g. 'cpu'), "
                         f"got {value!r}: {error}") from None
    if device.type == "meta":
        raise ValueError(f"{name} must be a device that holds values, got {value!r}")
    return device


def name_list(names: Any, limit: int = 10) -> str:
    """``names`` joined by commas for a message, the first ``limit`` of them and a count of
    the rest (``"a, b, c and 2,990 more"``), so a wide table cannot flood a terminal."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit:,} more"


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (numpy's included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_label_types(name: str, labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` if its values share one kind (numbers, strings, booleans), else raise
    naming two values of different kinds: they cannot be sorted into classes."""
    if labels.dtype != object or labels.size == 0:
        return labels

    def kind(value: Any) -> str:
        if isinstance(value, (bool, np.bool_)):
            return "bool"
        if isinstance(value, (int, float, np.number)):
            return "number"
        return type(value).__name__

    kinds = {kind(v): v for v in labels.reshape(-1)}
    if len(kinds) > 1:
        (k1, v1), (k2, v2) = list(kinds.items())[:2]
        raise TypeError(
            f"{name} must hold labels of one type, got a mix of {', '.join(sorted(kinds))}, "
            f"e.g. {v1!r} ({k1}) and {v2!r} ({k2}): convert them to one type, e.g. all str"
        )
    return labels
