"""Long-running processes take what they start with out of the collector's full walks."""

from __future__ import annotations

import gc

from herald.cli.resident import settle


def test_settling_freezes_what_exists() -> None:
    gc.unfreeze()
    try:
        settle()
        # A full collection took 90 ms in the loaded lab, between a Service and its status:
        # at least the modules' objects are out of its way now.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()  # the rest of this test process collects as before
