"""A node's flow-event reader and status socket, run inside a test namespace
(`python observe_runner.py --node n1 --socket PATH --directory JSON [--capture FILE]`).

As the agent runs them: `FlowReader` bound to herald's NFLOG group of the namespace,
served on a unix socket with `serve_status`. `--capture` also appends every datagram the
socket returns, in hex, one per line (how the golden fixtures of the unit tests were made).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from ipaddress import ip_address
from pathlib import Path

from herald.agent.status import AgentStatus, serve_status
from herald.dataplane.apply import Nft
from herald.dataplane.model import Backend, DataplaneService, ForwardingMode, Protocol, ServicePort
from herald.observe.event import Directory
from herald.observe.reader import FlowReader


class CapturingReader(FlowReader):
    capture: Path | None = None

    def take(self, datagram: bytes) -> None:
        if self.capture is not None:
            with self.capture.open("a") as out:
                out.write(datagram.hex() + "\n")
        super().take(datagram)


def services(path: Path) -> list[DataplaneService]:
    """The services of a JSON list: key, vips, [protocol, port, target], backends
    [address, node, pod], mode."""
    found = []
    for item in json.loads(path.read_text()):
        found.append(
            DataplaneService(
                key=item["key"],
                vips=tuple(ip_address(v) for v in item["vips"]),
                ports=tuple(
                    ServicePort(f"p{i}", Protocol(p), port, target)
                    for i, (p, port, target) in enumerate(item["ports"])
                ),
                backends=tuple(
                    Backend(ip_address(a), node, pod=pod) for a, node, pod in item["backends"]
                ),
                forwarding_mode=ForwardingMode(item.get("mode", "snat")),
            )
        )
    return found


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", required=True)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--directory", required=True, type=Path)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--capacity", type=int, default=4096)
    args = parser.parse_args()
    reader = CapturingReader(args.node, capacity=args.capacity)
    reader.capture = args.capture
    reader.directory = Directory.of(services(args.directory))
    reader.nft = Nft()
    if not reader.start():
        raise SystemExit(reader.error)
    server = await serve_status(args.socket, lambda _: AgentStatus(node=args.node), reader.stream)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
