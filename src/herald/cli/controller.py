"""`herald controller`: LB-IPAM for the cluster, one active instance at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

import click

from herald.cli.metrics_option import metrics_address_option
from herald.cli.resident import settle
from herald.cli.source_option import SourceChoice, leader_election_options, source_options
from herald.controller.leader import LeaseTimings
from herald.controller.run import run_controller
from herald.metrics.controller import ControllerMetrics
from herald.metrics.server import serve_metrics_if_asked


@click.command()
@source_options
@leader_election_options
@click.option(
    "--identity",
    envvar="HERALD_IDENTITY",
    default=lambda: f"{socket.gethostname()}-{os.getpid()}",
    help="Name of this instance in leader election (default: host and PID); env HERALD_IDENTITY.",
)
@metrics_address_option
def controller(
    source: SourceChoice, lease: LeaseTimings, identity: str, metrics_address: str | None
) -> None:
    """Watch the source, allocate LoadBalancer IPs, write Service and pool status."""
    logging.basicConfig(level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s %(message)s")

    async def main() -> None:
        from herald.sources.kube.kinds import CONTROLLER_KINDS

        if source.kind == "kube":
            # SIGTERM (a Pod stopping) ends the controller as Ctrl-C does: a leader hands its
            # Lease back on the way out, so a standby need not wait for it to expire. (The
            # files source's lock dies with the process: there SIGTERM still ends it at once.)
            running = asyncio.current_task()
            assert running is not None
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)

        chosen = source.open(CONTROLLER_KINDS, lease)
        exported = ControllerMetrics()
        metrics = await serve_metrics_if_asked(metrics_address, exported.exposition)
        try:
            await run_controller(chosen, identity, observe=exported.observe)
        finally:
            if metrics is not None:
                metrics.close()

    from herald.sources.kube.source import LeadershipLost

    settle()
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        try:
            asyncio.run(main())
        except LeadershipLost as lost:
            # As client-go's controllers: exit, and let the restart rejoin as a standby.
            raise click.ClickException(str(lost)) from None
