"""libnftables in-process gives the kernel exactly what the nft command gives it.

The same Datapath changes run in two fresh namespaces, one through each; the rulesets
they leave must be identical, and refusals, dry runs and counters must read the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns
RUNNER = Path(__file__).with_name("libnft_runner.py")


@pytest.fixture
def namespaces() -> Iterator[dict[str, str]]:
    names = {mode: f"hd-libnft-{mode}-{os.getpid()}" for mode in ("lib", "cli")}
    try:
        for name in names.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
            # The DSR scenario forwards out of eth0 (this kernel has no dummy links).
            subprocess.run(
                ["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                check=True,
            )
        yield names
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(name: str, *argv: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_the_library_and_the_command_leave_the_same_ruleset(namespaces: dict[str, str]) -> None:
    seen = {
        mode: json.loads(in_netns(name, sys.executable, str(RUNNER), mode))
        for mode, name in namespaces.items()
    }
    rulesets = {mode: in_netns(name, "nft", "list", "ruleset") for mode, name in namespaces.items()}
    assert "table inet herald" in rulesets["lib"]
    assert rulesets["lib"] == rulesets["cli"]
    lib, cli = seen["lib"], seen["cli"]
    assert "no-such-map" in lib["refused"] and "Error" in lib["refused"]
    assert lib["checked"] is None and cli["checked"] is None
    assert "herald-check" not in rulesets["lib"], "a dry run changes nothing"
    assert lib["conflict"] == cli["conflict"] is not None
    assert lib["counters"] == cli["counters"] != {}
