"""The compiled fill loop (_maglev.c) against the Python reference: identical tables."""

from __future__ import annotations

import logging
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.dataplane import _maglev, maglev  # type: ignore[attr-defined]


def names(count: int) -> list[str]:
    return [f"fd00::{i:x}" if i % 3 == 0 else f"198.18.{i // 250}.{i % 250}" for i in range(count)]


def both(backends: list[tuple[str, int]], seed: int, size: int) -> None:
    compiled = maglev.build(backends, seed, size, fill=_maglev.fill)
    reference = maglev.build(backends, seed, size, fill=maglev.python_fill)
    assert compiled.slots == reference.slots
    assert compiled == reference


def test_the_compiled_loop_is_the_one_in_use() -> None:
    # Fails when the extension was not built: scripts/setup.sh installs a compiler for it.
    assert maglev.IMPLEMENTATION == "c"
    assert maglev._fill is _maglev.fill


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    count=st.integers(1, 60),
    seed=st.integers(0, 2**64 - 1),
    size=st.sampled_from(maglev.PRIMES[:7]),
)
def test_identical_tables_equal_weights(count: int, seed: int, size: int) -> None:
    both([(n, 1) for n in names(count)], seed, size)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    weights=st.lists(
        st.one_of(st.integers(1, 10), st.integers(1, maglev.MAX_WEIGHT)), min_size=1, max_size=30
    ),
    seed=st.integers(0, 2**64 - 1),
    size=st.sampled_from(maglev.PRIMES[:6]),
)
def test_identical_tables_weighted(weights: list[int], seed: int, size: int) -> None:
    both(list(zip(names(len(weights)), weights, strict=True)), seed, size)


def test_one_backend_owns_every_slot() -> None:
    table = maglev.build([("10.0.0.1", 3)], 1, 16381)
    assert set(table.slots) == {0} and table.size == 16381
    both([("10.0.0.1", 3)], 1, 16381)


def test_extreme_weights_are_identical_and_every_backend_takes_its_first_turn() -> None:
    backends = [("a", 1), ("b", maglev.MAX_WEIGHT), ("c", 2)]
    both(backends, 9, 251)
    # The light ones' second turns would come after turn 32,768: the table is full by then.
    assert maglev.build(backends, 9, 251).counts() == {"a": 1, "b": 249, "c": 1}
    both(backends, 9, 131071)


def test_largest_table_with_more_than_1310_backends() -> None:
    count = 1500
    size = maglev.table_size(count)
    assert size == maglev.PRIMES[-1]
    both([(n, 1 + i % 4) for i, n in enumerate(names(count))], 3, size)


def test_the_most_backends_one_table_takes() -> None:
    count = maglev.PRIMES[-1] // maglev.MIN_SLOTS_PER_BACKEND
    both([(n, 1) for n in names(count)], 5, maglev.table_size(count))


@pytest.mark.parametrize("weight", [0, -1, maglev.MAX_WEIGHT + 1])
@pytest.mark.parametrize("fill", [_maglev.fill, maglev.python_fill])
def test_weights_outside_the_range_are_refused(weight: int, fill: maglev.Fill) -> None:
    with pytest.raises(ValueError, match="weight must be"):
        maglev.build([("a", 1), ("b", weight)], 1, 251, fill=fill)


def test_a_size_that_is_not_a_listed_prime_is_refused() -> None:
    with pytest.raises(ValueError, match="one of"):
        maglev.build([("a", 1)], 1, 1000)


def test_the_c_loop_checks_its_own_arguments() -> None:
    with pytest.raises(ValueError, match="weights"):
        _maglev.fill([0], [1], [0], 251)
    with pytest.raises(ValueError, match="skips"):
        _maglev.fill([0], [251], [1], 251)
    with pytest.raises(ValueError, match="expected 2"):
        _maglev.fill([0, 1], [1], [1, 1], 251)
    with pytest.raises(OverflowError):
        _maglev.fill([0], [1], [-1], 251)
    with pytest.raises(TypeError):
        _maglev.fill([0], ["1"], [1], 251)
    # A walk of stride 2 over 4 slots never reaches the odd ones: refused, not a hang.
    with pytest.raises(ValueError, match="prime"):
        _maglev.fill([0, 0], [2, 2], [1, 1], 4)
    assert _maglev.fill([], [], [], 251) == ()


def test_without_the_extension_python_fills_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # None in sys.modules makes the import raise ImportError, as a missing build would.
    monkeypatch.setitem(sys.modules, "herald.dataplane._maglev", None)
    with caplog.at_level(logging.WARNING, logger="herald.dataplane.maglev"):
        fill, implementation = maglev._compiled_fill()
    assert (fill, implementation) == (maglev.python_fill, "python")
    assert "event=maglev_fallback implementation=python" in caplog.text
