"""Runs one L2 responder inside a lab namespace, for the netns tests.

    python l2_runner.py INTERFACE STATE_FILE

STATE_FILE holds the VIPs this node owns, one a line; the runner polls it and, after each
change it applied, writes the same text to STATE_FILE.applied so the test knows when the
responder acts on it. Logs go to STATE_FILE.log. Started with `ip netns exec` and ended by its pid (SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from herald.l2.responder import Responder

POLL = 0.01


async def main(interface: str, state: Path) -> None:
    responder = Responder(interface)
    responder.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    applied_path = state.with_name(state.name + ".applied")
    applied = None
    try:
        while not stop.is_set():
            text = state.read_text() if state.exists() else ""
            if text != applied:
                responder.set_owned(ipaddress.ip_address(line) for line in text.split())
                applied_path.write_text(text)
                applied = text
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)
    finally:
        responder.close()


if __name__ == "__main__":
    state_file = Path(sys.argv[2])
    logging.basicConfig(
        level=logging.DEBUG,
        filename=state_file.with_name(state_file.name + ".log"),
        format="%(asctime)s %(message)s",
    )
    asyncio.run(main(sys.argv[1], state_file))
