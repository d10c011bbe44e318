"""Runs one agent's heartbeats inside a lab namespace, for the netns tests.

    python l2_heartbeat_runner.py NODE BIND_ADDRESS KEY_FILE EVENTS_FILE PEER=ADDRESS...

Appends one line per peer state change to EVENTS_FILE: `<CLOCK_MONOTONIC seconds> <peer>
<state>` (the monotonic clock is the same in every namespace, so the test compares it with
its own). SIGTERM leaves gracefully (peers are told); SIGKILL is a crash. The membership
protocol is HERALD_L2_MEMBERSHIP's ("heartbeat" when unset, or "swim").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from herald.l2.heartbeat import Event, PeerChanged
from herald.l2.key import read_key_file
from herald.l2.liveness import DEFAULT_PORT, Liveness, start_config


async def main(
    node: str, bind: str, key: Path, events: Path, peers: list[str], agent_timeout: float
) -> None:
    addresses = {p.split("=")[0]: (p.split("=")[1], DEFAULT_PORT) for p in peers}
    with events.open("a", buffering=1) as out:

        def record(event: Event) -> None:
            if isinstance(event, PeerChanged):
                out.write(f"{time.monotonic():.6f} {event.node} {event.after}\n")

        liveness = await Liveness.open(
            start_config(
                node, read_key_file(key), os.environ.get("HERALD_L2_MEMBERSHIP", "heartbeat")
            ),
            addresses,
            (bind, DEFAULT_PORT),
            record,
            agent_timeout=agent_timeout,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        liveness.close(leave=True)


if __name__ == "__main__":
    timeout, node, bind, key, events, *peers = sys.argv[1:]
    asyncio.run(main(node, bind, Path(key), Path(events), peers, float(timeout)))
