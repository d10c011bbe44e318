from __future__ import annotations

from collections.abc import Iterator

import pytest
from teardown import torn_down


@pytest.fixture
def lab_cleanup() -> Iterator[None]:
    """The lab a test builds is taken down after it."""
    with torn_down():
        yield
