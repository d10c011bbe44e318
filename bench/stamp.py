"""What every benchmark result carries (which benchmark, when, on which machine), and how
it is published (printed, and written to its results file when one is given).

The scripts run as `python bench/NAME/script.py`; they put this directory on sys.path to
import it.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path


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


def publish(results: Mapping[str, object], path: Path | None) -> None:
    text = json.dumps(results, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
