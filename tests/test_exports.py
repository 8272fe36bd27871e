"""``import noisybayes as nb`` reaches the public surface, and ``__all__`` is honest."""

from __future__ import annotations

import noisybayes as nb


def test_all_names_exist():
    for name in nb.__all__:
        assert hasattr(nb, name), name


def test_public_names_are_exported():
    public = {n for n in vars(nb) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(nb, n)).__name__ == "module"}
    assert public - modules - {"annotations"} <= set(nb.__all__) | {"__version__"}


def test_all_is_sorted_and_unique():
    assert list(nb.__all__) == sorted(set(nb.__all__))
