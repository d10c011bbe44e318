"""Every lab test leaves the machine as it found it: the lab down, nothing of it left."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from herald.lab import cluster


@contextlib.contextmanager
def torn_down() -> Iterator[None]:
    """Runs the body, then takes the lab down and checks none of its namespaces or
    processes outlived it, whether the body failed or not."""
    try:
        yield
    finally:
        state = cluster.read_state()
        cluster.down()
        assert cluster.leftovers(state) == []
