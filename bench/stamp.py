"""What every benchmark result carries: which benchmark, when, on which machine.

The scripts run as `python bench/NAME/script.py`; they put this directory on sys.path to
import it.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def machine() -> str:
    return (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def stamp(benchmark: str) -> dict[str, object]:
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
