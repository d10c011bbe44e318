"""Running the kernel's command-line tools (nft, conntrack), optionally in a namespace."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

# Tests replace the runner to see the commands without a kernel.
Runner = Callable[[Sequence[str], str], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)


def in_netns(netns: str | None, *argv: str) -> list[str]:
    """`argv` run inside the named network namespace, or here when there is none."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
