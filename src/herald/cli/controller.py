"""`herald controller`: LB-IPAM for the cluster, one active instance at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

import click

from herald.cli.source_option import manifests_option
from herald.controller.run import run_controller
from herald.sources.files import FileSource


@click.command()
@manifests_option
@click.option(
    "--identity",
    default=lambda: f"{socket.gethostname()}-{os.getpid()}",
    help="Name of this instance in leader election (default: host and PID).",
)
def controller(manifests: Path, identity: str) -> None:
    """Watch the source, allocate LoadBalancer IPs, write Service and pool status."""
    logging.basicConfig(level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_controller(FileSource(manifests), identity))
