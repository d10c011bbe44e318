"""Forgets the UDP flows a change leaves bound to a backend that no longer takes new flows.

Established flows keep their backend through conntrack, which is what TCP wants. UDP has no
end of connection: a client that keeps sending from the same port (a DNS resolver, a QUIC or
WireGuard client) would keep reaching a deleted pod until its conntrack entry times out, or
keep getting silence from a service that has no backend left instead of the ICMP
unreachable that would make it give up. kube-proxy deletes such entries for the same reason;
so does herald, after the new rules are committed, so that the next datagram is hashed
again over the backends that remain (or rejected when none does).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from herald.dataplane.command import Runner, in_netns, run_command
from herald.dataplane.endpoints import usable_backends
from herald.dataplane.model import DataplaneService, IPAddress, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Flow:
    """UDP conntrack entries from any client to `vip:port` that were sent to `backend`
    (None: to any backend, when none is left for `vip:port`)."""

    vip: IPAddress
    port: int
    backend: IPAddress | None = None
    target_port: int | None = None

    def sort_key(self) -> tuple[int, bytes, int, bytes, int]:
        backend = self.backend.packed if self.backend is not None else b""
        return (self.vip.version, self.vip.packed, self.port, backend, self.target_port or 0)


def destinations(service: DataplaneService | None, node: str) -> set[Flow]:
    """Where this node may send a UDP flow of `service`."""
    if service is None:
        return set()
    backends = usable_backends(service, node)
    return {
        Flow(vip, port.port, backend.address, port.target_port)
        for port in service.ports
        if port.protocol is Protocol.UDP
        for vip in service.vips
        for backend in backends
        if backend.version == vip.version
    }


def stale_flows(
    old: DataplaneService | None, new: DataplaneService | None, node: str
) -> list[Flow]:
    """The destinations `old` allowed and `new` does not, in a stable order; one Flow for
    all of a `vip:port` that has no destination left (one command instead of one per
    backend when a Service is deleted or loses every backend)."""
    remaining = destinations(new, node)
    served = {(f.vip, f.port) for f in remaining}
    gone = destinations(old, node) - remaining
    flows = {f if (f.vip, f.port) in served else Flow(f.vip, f.port) for f in gone}
    return sorted(flows, key=Flow.sort_key)


@dataclass
class Conntrack:
    """The conntrack command, optionally inside a named network namespace."""

    netns: str | None = None
    runner: Runner = run_command

    def forget(self, flows: Sequence[Flow]) -> None:
        for flow in flows:
            family = "ipv4" if flow.vip.version == 4 else "ipv6"
            argv = ["conntrack", "-D", "-f", family, "-p", "udp"]
            argv += ["--orig-dst", str(flow.vip), "--orig-port-dst", str(flow.port)]
            if flow.backend is not None:
                argv += ["--reply-src", str(flow.backend)]
                argv += ["--reply-port-src", str(flow.target_port)]
            # Exit status 1 only says that no entry matched, which is the common case.
            try:
                self.runner(in_netns(self.netns, *argv), "")
            except OSError as err:
                # No conntrack tool: the entries expire on their own; the rules are in.
                log.warning("event=conntrack_unavailable error=%r", str(err))
                return
