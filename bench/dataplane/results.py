"""One results file for the datapath benchmarks, bench/results/dataplane.json: each run
replaces its own section, stamped with the machine, the date and the load it ran under."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from stamp import stamp

FILE = Path(__file__).resolve().parents[1] / "results" / "dataplane.json"


def record(section: str, result: dict[str, object]) -> None:
    stamped = {
        **stamp(section),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        **result,
    }
    everything = json.loads(FILE.read_text()) if FILE.exists() else {}
    everything[section] = stamped
    FILE.parent.mkdir(exist_ok=True)
    FILE.write_text(json.dumps(dict(sorted(everything.items())), indent=2) + "\n")
    print(json.dumps(stamped, indent=2))
