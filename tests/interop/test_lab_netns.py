"""The lab's namespace helper cleans up after itself and after runs that died."""

from __future__ import annotations

import os
import subprocess

import pytest

from herald.lab.netns import Lab, LabError, namespaces, remove_stale, run

pytestmark = pytest.mark.netns


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_close_ends_processes_and_removes_namespaces() -> None:
    with Lab(prefix="hd-lt") as lab:
        lab.host("a")
        lab.host("b")
        lab.link("a", "eth0", "b", "eth0")
        lab.address("a", "eth0", "192.0.2.50/24")
        lab.address("b", "eth0", "192.0.2.51/24")
        assert lab.exec("a", "ping", "-c1", "-W1", "192.0.2.51").returncode == 0
        sleeper = lab.spawn("b", ["sleep", "60"])
        made = set(lab.hosts.values())
    assert sleeper.poll() is not None, "the process was ended"
    assert not made & set(namespaces())


def test_stale_namespaces_of_dead_runs_are_removed_live_ones_kept() -> None:
    stale = f"hd-lt{dead_pid()}-x"
    live = f"hd-lt{os.getpid()}-y"
    run(["ip", "netns", "add", stale])
    run(["ip", "netns", "add", live])
    try:
        assert remove_stale("hd-lt") == [stale]
        assert live in namespaces()
    finally:
        for name in (stale, live):
            run(["ip", "netns", "delete", name], check=False)


def test_failing_command_names_itself() -> None:
    with Lab(prefix="hd-lt") as lab:
        lab.host("a")
        with pytest.raises(LabError, match="no-such-device"):
            lab.ip("a", "link", "set", "no-such-device", "up")
