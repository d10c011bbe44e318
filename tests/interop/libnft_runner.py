"""Drives a Datapath through the golden scenarios in this process's network namespace, with
libnftables (`lib`) or the nft command (`cli`), and prints what it saw as JSON.

Run inside a namespace by tests/interop/test_libnft.py: the library acts in the namespace
of the process that calls it, so the test cannot call it from its own.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "dataplane"))

from scenarios import NODE, SCENARIOS

from herald.dataplane.apply import ApplyError, Datapath, Nft, NftApi
from herald.dataplane.libnft import LibNft


def main(mode: str) -> None:
    nft: NftApi = LibNft() if mode == "lib" else Nft()
    datapath = Datapath(NODE, nft)
    for services in SCENARIOS.values():
        datapath.sync(services)
    final = [s for services in SCENARIOS.values() for s in services if s.key != "default/web"]
    datapath.sync(final)
    refused = nft.transaction("add element inet herald no-such-map { 1.2.3.4 }\n")
    checked = nft.transaction("add table inet herald-check\n", check_only=True)
    try:
        web = SCENARIOS["snat"][0]
        datapath.sync([*final, web, replace(web, key="default/web-copy")])
        conflict = None
    except ApplyError as err:
        conflict = str(err)
    counters = {key: asdict(value) for key, value in datapath.counters().items()}
    json.dump(
        {"refused": refused, "checked": checked, "conflict": conflict, "counters": counters},
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1])
