"""herald's Maglev table build, Python reference and compiled, side by side with Cilium's
pkg/maglev construction in Go (cilium_maglev.go, written from a description of Cilium's
algorithm and built here with Debian's golang), at N backends and M = 16,381 slots; and the
share of slots that change owner when one backend leaves, for both.

    .venv/bin/python bench/maglev/compare.py --json bench/results/maglev.json

Needs `go`: when it is missing and the script runs as root it installs Debian's golang-go
with apt-get (never part of setup or CI). Times are the median and minimum of --repeats
builds of each; each build is timed alone, one after the other, on the same machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from herald.dataplane import maglev

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stamp import publish, stamp

HERE = Path(__file__).resolve().parent
SIZE = 16381
HERALD_SEED = 0x5EED
# Cilium's default hash seed; its first four bytes seed MurmurHash3.
CILIUM_SEED = int.from_bytes(base64.b64decode("JLfvgnHc2kaSUFaI")[:4], "big")
VICTIMS = 5


def names(count: int) -> list[str]:
    return [f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(count)]


def victims(backends: Sequence[str]) -> list[str]:
    step = max(len(backends) // VICTIMS, 1)
    return list(backends[::step][:VICTIMS])


def go_binary(workdir: Path) -> tuple[Path, str]:
    go = shutil.which("go")
    if go is None:
        if os.geteuid() != 0:
            raise SystemExit("compare: `go` is missing; run as root to apt-get install golang-go")
        print("compare: installing Debian's golang-go", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "golang-go"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )
        go = shutil.which("go") or "/usr/bin/go"
    shutil.copy(HERE / "cilium_maglev.go", workdir / "main.go")
    (workdir / "go.mod").write_text("module maglevbench\n\ngo 1.19\n")
    env = {**os.environ, "GOCACHE": str(workdir / "cache"), "GOFLAGS": "-mod=mod"}
    subprocess.run([go, "build", "-o", "maglev", "."], cwd=workdir, check=True, env=env)
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True)
    return workdir / "maglev", version.stdout.strip()


def owners(backends: Sequence[str], fill: maglev.Fill) -> list[str]:
    table = maglev.build([(n, 1) for n in backends], HERALD_SEED, SIZE, fill=fill)
    return [table.names[i] for i in table.slots]


def moved(before: Sequence[str], after: Sequence[str]) -> float:
    return sum(1 for a, b in zip(before, after, strict=True) if a != b) / len(before)


def herald(backends: Sequence[str], fill: maglev.Fill, repeats: int) -> dict[str, float]:
    pairs = [(n, 1) for n in backends]
    maglev.build(pairs, HERALD_SEED, SIZE, fill=fill)
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        maglev.build(pairs, HERALD_SEED, SIZE, fill=fill)
        times.append(time.perf_counter_ns() - start)
    before = owners(backends, fill)
    shares = [
        moved(before, owners([n for n in backends if n != victim], fill))
        for victim in victims(backends)
    ]
    return summary(times, shares)


def summary(times_ns: Sequence[int], shares: Sequence[float]) -> dict[str, float]:
    return {
        "build_ms_median": round(statistics.median(times_ns) / 1e6, 3),
        "build_ms_min": round(min(times_ns) / 1e6, 3),
        "moved_mean": round(statistics.mean(shares), 4),
        "moved_max": round(max(shares), 4),
    }


class GoCase(TypedDict):
    n: int
    build_ns: list[int]
    moved: list[float]


class GoResult(TypedDict):
    go: str
    num_cpu: int
    cases: list[GoCase]


def cilium(binary: Path, counts: Sequence[int], repeats: int) -> GoResult:
    request = {
        "m": SIZE,
        "seed": CILIUM_SEED,
        "repeats": repeats,
        "cases": [
            {"names": names(n), "weights": [1] * n, "victims": victims(names(n))} for n in counts
        ],
    }
    done = subprocess.run(
        [str(binary)], input=json.dumps(request), capture_output=True, text=True, check=True
    )
    result: GoResult = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if maglev.IMPLEMENTATION != "c":
        raise SystemExit("compare: the compiled fill did not import; run scripts/setup.sh")
    compiled = maglev._fill
    with tempfile.TemporaryDirectory(prefix="maglev-bench-") as tmp:
        binary, go_version = go_binary(Path(tmp))
        go = cilium(binary, args.backends, args.repeats)
    rows = []
    for n, case in zip(args.backends, go["cases"], strict=True):
        backends = names(n)
        reference = herald(backends, maglev.python_fill, args.repeats)
        fast = herald(backends, compiled, args.repeats)
        theirs = summary(case["build_ns"], case["moved"])
        rows.append(
            {
                "backends": n,
                "herald_python": reference,
                "herald_c": fast,
                "cilium_go": theirs,
                "herald_c_over_cilium": round(
                    fast["build_ms_median"] / theirs["build_ms_median"], 3
                ),
                "herald_python_over_cilium": round(
                    reference["build_ms_median"] / theirs["build_ms_median"], 3
                ),
                "unavoidable_moved": round(1 / n, 4),
            }
        )
    publish(
        {
            **stamp("maglev-compare"),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "table_size": SIZE,
            "repeats": args.repeats,
            "go": go_version,
            "go_num_cpu": go["num_cpu"],
            "cilium_source": "bench/maglev/cilium_maglev.go: Cilium's pkg/maglev algorithm "
            "re-implemented from its description (MurmurHash3 x64_128 checked against mmh3)",
            "results": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
