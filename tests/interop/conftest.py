"""Fixtures of the interop tests; the networks themselves are built by helper modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dataplane_cluster import Cluster, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Torn down (namespaces removed, processes ended by pid) even when a test fails."""
    with running_cluster(tmp_path_factory.mktemp("traffic")) as built:
        yield built
