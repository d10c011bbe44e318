"""The test double on a background thread, and the real kubectl pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.lab.kubeapi.background import BackgroundKubeApiServer

from .kubectl import Kubectl, kubectl_binary


@pytest.fixture
def api() -> Iterator[BackgroundKubeApiServer]:
    with BackgroundKubeApiServer(bookmark_interval=0.5) as bg:
        yield bg


@pytest.fixture
def kubectl(api: BackgroundKubeApiServer, tmp_path: Path) -> Kubectl:
    config = api.server.write_kubeconfig(tmp_path / "kubeconfig")
    return Kubectl(kubectl_binary(), config, tmp_path / "cache")
