"""From a NodePlan's BGP sessions to the speaker's peer configuration (pure)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from herald.agent.plan import PeerPlan
from herald.api.bfd import BFDProfileSpec
from herald.bfd.session import Timers
from herald.bgp.peer import PeerConfig
from herald.bgp.wire import IPV4_UNICAST, IPV6_UNICAST, Family


@dataclass(frozen=True)
class SpeakerKey:
    """One speaker per BGP instance: its AS, identifier and listening port."""

    instance: str
    local_asn: int
    router_id: str
    listen_port: int


def speaker_key(peer: PeerPlan) -> SpeakerKey | None:
    if peer.router_id is None:
        return None
    return SpeakerKey(peer.instance, peer.local_asn, peer.router_id, peer.listen_port)


def peer_config(peer: PeerPlan) -> PeerConfig:
    spec = peer.config
    families: set[Family] = {
        IPV4_UNICAST if family.afi == "ipv4" else IPV6_UNICAST for family in spec.families
    }
    return PeerConfig(
        address=peer.address,
        peer_as=peer.peer_asn,
        port=spec.transport.peer_port,
        local_address=(
            ipaddress.ip_address(spec.transport.source_address)
            if spec.transport.source_address
            else None
        ),
        hold_time=spec.timers.hold_time_seconds,
        connect_retry_time=float(spec.timers.connect_retry_time_seconds),
        password=peer.password,
        # 1 is a directly connected eBGP peer: the speaker's default (None) already.
        ebgp_multihop=spec.ebgp_multihop if spec.ebgp_multihop > 1 else None,
        ttl_security_hops=1 if spec.ttl_security else None,
        families=frozenset(families),
        graceful_restart_time=(
            spec.graceful_restart.restart_time_seconds if spec.graceful_restart.enabled else None
        ),
        bfd=_bfd_timers(peer.bfd),
    )


def _bfd_timers(profile: BFDProfileSpec | None) -> Timers | None:
    if profile is None:
        return None
    return Timers.from_ms(
        profile.transmit_interval,
        profile.receive_interval,
        profile.detect_multiplier,
        passive=profile.passive_mode,
    )
