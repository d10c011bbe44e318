"""Test-suite wide rules.

Tests marked `netns` need root and network namespaces. On a developer's machine without
them they are skipped with a loud reason; in CI (CI=true, which runs as root) they are never
skipped: if they cannot run there, they fail.
"""

from __future__ import annotations

import os
import shutil

import pytest


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _netns_unavailable()
    if reason is None or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return
    for item in items:
        if item.get_closest_marker("netns") is not None:
            item.add_marker(pytest.mark.skip(reason=f"NETNS TEST NOT RUN: {reason}"))
