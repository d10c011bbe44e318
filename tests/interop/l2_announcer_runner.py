"""Runs one node's L2 announcer inside a lab namespace, for the netns failover tests.

    python l2_announcer_runner.py NODE BIND_ADDRESS KEY_FILE STATUS_FILE VIPS PEER=ADDRESS...

VIPS is a comma-separated list, announced on eth0 with every node of PEERS and this one as
candidates. After every change of what it answers for, the runner rewrites STATUS_FILE with
those VIPs, one a line. SIGTERM stops gracefully (peers are told); SIGKILL is a crash.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from herald.l2.announcer import Announcer
from herald.l2.key import read_key_file
from herald.l2.liveness import DEFAULT_PORT, start_config
from herald.l2.policy import Announcement, Candidate

POLL = 0.005


async def main(node: str, bind: str, key: Path, status: Path, vips: str, peers: list[str]) -> None:
    addresses = {p.split("=")[0]: (p.split("=")[1], DEFAULT_PORT) for p in peers}
    nodes = sorted([node, *addresses])
    announcer = Announcer(node, {"eth0": []})
    await announcer.open(start_config(node, read_key_file(key)), addresses, (bind, DEFAULT_PORT))
    announcer.set_announced(
        Announcement(
            ipaddress.ip_address(vip),
            ("default/web",),
            tuple(Candidate(n, ("^eth0$",)) for n in nodes),
        )
        for vip in vips.split(",")
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    written = None
    while not stop.is_set():
        text = "".join(f"{vip}\n" for vip in sorted(map(str, announcer.owned().get("eth0", ()))))
        if text != written:
            status.write_text(text)
            written = text
        try:
            await asyncio.wait_for(stop.wait(), POLL)
        except TimeoutError:
            continue
    announcer.close()


if __name__ == "__main__":
    node, bind, key, status, vips, *peers = sys.argv[1:]
    logging.basicConfig(
        level=logging.INFO, filename=f"{status}.log", format="%(asctime)s %(message)s"
    )
    asyncio.run(main(node, bind, Path(key), Path(status), vips, peers))
