"""The library leaves process-wide settings as it found them.

``torch.distributions``' default argument validation is switched off around batched
evaluation of user models (``batched_evaluation``) and must come back exactly once, after
fits, predictions, exceptions, nesting and concurrent use. Thread counts and the validation
default are set only where the project allows it.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.distributions import Distribution, Normal

import noisybayes as nb
from noisybayes.infer.objective import batched_evaluation

SRC = Path(__file__).resolve().parents[1] / "src" / "noisybayes"


class Line(nb.Model):
    def __init__(self) -> None:
        super().__init__()
        self.beta = nb.param(Normal(0.0, 10.0))

    def forward(self, x: torch.Tensor) -> Normal:
        return Normal(self.beta * x, 1.0)


@pytest.fixture(params=[True, False], ids=["validation-on", "validation-off"])
def initial(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run the test with the default set to each value; put the suite's value back after."""
    before = Distribution._validate_args
    Distribution.set_default_validate_args(request.param)
    try:
        yield request.param
    finally:
        Distribution.set_default_validate_args(before)


def _filter_count() -> int:
    return sum(
        1
        for entry in warnings.filters
        if entry[0] == "ignore"
        and entry[1] is not None
        and entry[1].pattern == "There is a performance drop"
    )


def test_fit_and_predict_leave_the_validation_default_as_it_was(initial: bool) -> None:
    x = torch.linspace(-1.0, 1.0, 20)
    y = 0.5 * x + torch.randn(20, generator=torch.Generator().manual_seed(0))
    filters = _filter_count()
    post = nb.fit(Line(), x, y, family="meanfield", max_steps=200, seed=0, progress=False)
    assert Distribution._validate_args is initial
    post.predict(x[:3], n_samples=50, seed=0)
    assert Distribution._validate_args is initial
    assert _filter_count() == filters


def test_an_exception_inside_the_block_restores_the_default(initial: bool) -> None:
    with pytest.raises(RuntimeError, match="inside"), batched_evaluation():
        assert Distribution._validate_args is False
        raise RuntimeError("raised inside batched_evaluation")
    assert Distribution._validate_args is initial


def test_nested_blocks_restore_once_when_the_outermost_exits(initial: bool) -> None:
    with batched_evaluation():
        with batched_evaluation():
            assert Distribution._validate_args is False
        assert Distribution._validate_args is False  # the outer block is still running
    assert Distribution._validate_args is initial


def test_concurrent_blocks_in_two_threads_leave_the_default_unchanged(initial: bool) -> None:
    """The first thread leaves while the second (nested) is still inside: the default stays
    off until the second leaves, then it is the original value, whichever thread ends last."""
    both_inside = threading.Barrier(2, timeout=10)
    first_left = threading.Event()
    seen: dict[str, bool] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with batched_evaluation():
                both_inside.wait()
            first_left.set()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    def second() -> None:
        try:
            with batched_evaluation():
                with batched_evaluation():
                    both_inside.wait()
                    assert first_left.wait(timeout=10)
                    seen["after first left"] = Distribution._validate_args
                seen["after inner exit"] = Distribution._validate_args
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not errors, errors
    assert seen == {"after first left": False, "after inner exit": False}
    assert Distribution._validate_args is initial


def test_many_threads_entering_and_leaving_restore_the_default(initial: bool) -> None:
    def work() -> None:
        for _ in range(200):
            with batched_evaluation():
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert Distribution._validate_args is initial


@pytest.mark.parametrize(
    ("call", "allowed"),
    [
        ("set_num_threads", {"cli/main.py", "infer/fit.py"}),
        ("set_num_interop_threads", set()),
        ("set_default_validate_args", {"infer/objective.py"}),
    ],
)
def test_process_wide_switches_are_set_only_where_allowed(call: str, allowed: set[str]) -> None:
    """Thread counts belong to the command line (``--threads``) and to ``nb.fit``'s one
    thread for small problems (put back after, tested below); the validation default only
    to ``batched_evaluation``."""
    pattern = re.compile(rf"\b{call}\s*\(")
    found = {
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    }
    assert found <= allowed


def test_a_small_fit_runs_on_one_thread_and_puts_the_setting_back() -> None:
    seen: list[int] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.linspace(-1, 1, 50)
        nb.fit(Line(), x, 2 * x, seed=0, progress=False,
               callback=lambda state: seen.append(torch.get_num_threads()))
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
