"""The real kubectl, pointed at the test double."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "deploy" / "crds"
SEED = REPO / "examples" / "seed"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def kubectl_binary() -> str:
    found = os.environ.get("HERALD_KUBECTL") or shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: scripts/setup.sh installs it (kubernetes-client)")
    return found


@dataclass
class Kubectl:
    """The real kubectl with its own kubeconfig and discovery cache."""

    binary: str
    kubeconfig: Path
    cache: Path

    def command(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache),
            *args,
        ]

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args), input=stdin, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout
