"""`herald validate` and the speaker agree: every value the API models accept, `PeerConfig`
(and `Speaker`) accept too, so no valid manifest can take an agent down later. Both check
the same `herald.bgp.limits`; this test keeps it that way at every edge of every range."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from pydantic import ValidationError

from herald.api.bgp import BGPClusterConfig, BGPPeerConfig
from herald.bgp import limits
from herald.bgp.limits import Limit
from herald.bgp.peer import PeerConfig
from herald.bgp.speaker import Speaker

ADDRESS = IPv4Address("192.0.2.1")


def cluster(local_asn: int = 64512, peer_asn: int = 64512) -> dict[str, Any]:
    peer = {"name": "r1", "peerAddress": str(ADDRESS), "peerASN": peer_asn}
    instance = {"name": "a", "localASN": local_asn, "peers": [peer]}
    return {"metadata": {"name": "c"}, "spec": {"bgpInstances": [instance]}}


def peer_config(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": spec}


def speaker(local_as: int) -> None:
    Speaker(local_as, IPv4Address("192.0.2.21"), listen=None)


# (what, limit, API document for a value, the speaker side for the same value)
CASES: list[tuple[str, Limit, Callable[[int], Any], Callable[[int], None]]] = [
    (
        "peerASN",
        limits.AS_NUMBER,
        lambda v: BGPClusterConfig.model_validate(cluster(peer_asn=v)),
        lambda v: PeerConfig(ADDRESS, v) and None,
    ),
    (
        "localASN",
        limits.AS_NUMBER,
        lambda v: BGPClusterConfig.model_validate(cluster(local_asn=v)),
        speaker,
    ),
    (
        "holdTimeSeconds",
        limits.HOLD_TIME,
        lambda v: BGPPeerConfig.model_validate(
            peer_config({"timers": {"holdTimeSeconds": v, "keepAliveTimeSeconds": 1}})
        ),
        lambda v: PeerConfig(ADDRESS, 64512, hold_time=v) and None,
    ),
    (
        "peerPort",
        limits.PORT,
        lambda v: BGPPeerConfig.model_validate(peer_config({"transport": {"peerPort": v}})),
        lambda v: PeerConfig(ADDRESS, 64512, port=v) and None,
    ),
    (
        "connectRetryTimeSeconds",
        limits.CONNECT_RETRY_TIME,
        lambda v: BGPPeerConfig.model_validate(
            peer_config({"timers": {"connectRetryTimeSeconds": v}})
        ),
        lambda v: PeerConfig(ADDRESS, 64512, connect_retry_time=float(v)) and None,
    ),
    (
        "ebgpMultihop",
        limits.EBGP_MULTIHOP,
        lambda v: BGPPeerConfig.model_validate(peer_config({"ebgpMultihop": v})),
        lambda v: PeerConfig(ADDRESS, 64512, ebgp_multihop=v) and None,
    ),
    (
        "restartTimeSeconds",
        limits.GRACEFUL_RESTART_TIME,
        lambda v: BGPPeerConfig.model_validate(
            peer_config({"gracefulRestart": {"enabled": True, "restartTimeSeconds": v}})
        ),
        lambda v: PeerConfig(ADDRESS, 64512, graceful_restart_time=v) and None,
    ),
]


def edges(limit: Limit) -> list[int]:
    values = {0, limit.low - 1, limit.low, limit.low + 1, limit.high - 1, limit.high}
    values |= {limit.high + 1, 2**32, -1, 23456} | {v for v, _ in limit.excluded}
    return sorted(values)


def accepts(check: Callable[[int], Any], value: int) -> bool:
    try:
        check(value)
    except (ValueError, ValidationError):  # pydantic's is a ValueError too
        return False
    return True


@pytest.mark.parametrize(("what", "limit", "api", "runtime"), CASES, ids=[c[0] for c in CASES])
def test_api_and_speaker_accept_the_same_values(
    what: str, limit: Limit, api: Callable[[int], Any], runtime: Callable[[int], None]
) -> None:
    for value in edges(limit):
        api_ok, runtime_ok = accepts(api, value), accepts(runtime, value)
        assert api_ok == runtime_ok, f"{what}={value}: API {api_ok}, speaker {runtime_ok}"
        assert api_ok == (limit.problem(value) is None), f"{what}={value}"


def test_the_limits_say_what_is_wrong_and_what_is_allowed() -> None:
    assert limits.AS_NUMBER.problem(23456) == (
        "23456 is AS_TRANS (RFC 6793), which only stands in for a 4-octet AS on the wire; "
        "use 1..4294967295 except 23456"
    )
    assert limits.AS_NUMBER.problem(0) == "0 is outside 1..4294967295 except 23456"
    assert limits.HOLD_TIME.problem(3) is None and limits.HOLD_TIME.problem(0) is None
    with pytest.raises(ValueError, match=r"peer 192\.0\.2\.1: AS 0 is outside"):
        PeerConfig(ADDRESS, 0)
    with pytest.raises(ValueError, match=r"router id 0\.0\.0\.0"):
        Speaker(64512, IPv4Address(0), listen=None)


def test_peer_config_refuses_no_families_and_the_api_needs_one() -> None:
    with pytest.raises(ValueError, match="families must be one or more of"):
        PeerConfig(ADDRESS, 64512, families=frozenset())
    with pytest.raises(ValidationError):
        BGPPeerConfig.model_validate(peer_config({"families": []}))


def test_source_address_must_be_an_address() -> None:
    with pytest.raises(ValidationError, match="is not an IP address"):
        BGPPeerConfig.model_validate(peer_config({"transport": {"sourceAddress": "eth0"}}))


def test_enforce_first_as_defaults_on_in_both() -> None:
    spec = BGPPeerConfig.model_validate(peer_config({})).spec
    assert spec.enforce_first_as is True and PeerConfig(ADDRESS, 64512).enforce_first_as
    off = BGPPeerConfig.model_validate(peer_config({"enforceFirstAS": False}))
    assert off.spec.enforce_first_as is False
