"""Small BGP topologies for the interop tests: routers and herald speakers on one segment.

`192.0.2.0/24` and `2001:db8:2::/64` are the node network (router .1 / ::1, herald nodes
.21, .22, … / ::21, …); every host has a veth into the switch namespace's bridge.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from herald.lab.netns import Lab
from herald.lab.routers import BACKENDS, HeraldSpeaker, Neighbor, Router, RouterSpec

HERALD = str(Path(sys.executable).parent / "herald")
ROUTER_V4, ROUTER_V6 = "192.0.2.1", "2001:db8:2::1"
AS = 64512
AS4 = 4200000000


def node_v4(index: int) -> str:
    return f"192.0.2.{21 + index}"


def node_v6(index: int) -> str:
    return f"2001:db8:2::{21 + index}"


@dataclass
class BgpLab:
    lab: Lab
    workdir: Path
    nodes: int
    speakers: list[HeraldSpeaker] = field(default_factory=list)
    routers: list[Router] = field(default_factory=list)

    def router(self, kind: str, spec: RouterSpec) -> Router:
        router: Router = BACKENDS[kind](self.lab, "r1", spec, self.workdir / kind)
        self.routers.append(router)
        router.start()
        return router

    def herald(self, index: int, *args: str, name: str = "") -> HeraldSpeaker:
        workdir = self.workdir / f"herald-{index}{name}"
        speaker = HeraldSpeaker(self.lab, f"n{index}", list(args), workdir, HERALD)
        self.speakers.append(speaker)
        speaker.start()
        return speaker


def neighbors_for(
    nodes: int, asn: int, v6_transport: bool = False, **options: object
) -> tuple[Neighbor, ...]:
    address = node_v6 if v6_transport else node_v4
    return tuple(Neighbor(address(i), asn, **options) for i in range(nodes))  # type: ignore[arg-type]


@contextlib.contextmanager
def bgp_lab(workdir: Path, nodes: int = 1) -> Iterator[BgpLab]:
    with Lab() as lab:
        lab.host("sw")
        lab.bridge("sw", "br0")
        hosts = [("r1", ROUTER_V4, ROUTER_V6)]
        hosts += [(f"n{i}", node_v4(i), node_v6(i)) for i in range(nodes)]
        for host, v4, v6 in hosts:
            lab.host(host, forwarding=host == "r1")
            lab.link("sw", f"p-{host}", host, "eth0")
            lab.ip("sw", "link", "set", f"p-{host}", "master", "br0")
            lab.address(host, "eth0", f"{v4}/24")
            lab.address(host, "eth0", f"{v6}/64")
        built = BgpLab(lab, workdir, nodes)
        try:
            yield built
        finally:
            for router in built.routers:
                with contextlib.suppress(Exception):
                    router.stop()
            for speaker in built.speakers:
                with contextlib.suppress(Exception):
                    speaker.stop()
