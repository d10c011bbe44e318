"""`herald bgp speak`: bring up BGP sessions by hand, announce prefixes, watch the sessions.

An engineer points it at a router to test it: sessions come up, the given prefixes are
announced to every peer with the given attributes, each state change is printed, and
Ctrl-C ends it (with a Cease to each peer).

Its own background work (printing events, the periodic status) is supervised like the
speaker's: a failure there is logged and the task started again, never lost silently while
the sessions go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import click
import yaml

from herald.agent.bfd import BfdProcess
from herald.api.bgp import parse_large_community, parse_standard_community
from herald.bfd.session import Timers
from herald.bgp.export import Network, RouteAttributes
from herald.bgp.limits import DEFAULT_MAX_PREFIXES
from herald.bgp.peer import BGP_PORT, PeerConfig
from herald.bgp.speaker import Speaker
from herald.bgp.supervise import Supervised, default_delay
from herald.bgp.wire import LargeCommunity


@click.group()
def bgp() -> None:
    """herald's BGP speaker."""


def parse_peer(text: str) -> tuple[IPv4Address | IPv6Address, int, bool]:
    """ADDRESS:AS[:passive]; an IPv6 address may be bracketed ([2001:db8::1]:64512)."""
    rest, passive = text, False
    if rest.endswith(":passive"):
        rest, passive = rest.removesuffix(":passive"), True
    address, sep, asn = rest.rpartition(":")
    try:
        if not sep:
            raise ValueError
        return ip_address(address.strip("[]")), int(asn), passive
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: write ADDRESS:AS or ADDRESS:AS:passive, e.g. 192.0.2.1:64512 or "
            "[2001:db8::1]:4200000000:passive"
        ) from None


def _communities(values: Iterable[str]) -> tuple[int, ...]:
    try:
        return tuple(parse_standard_community(v) for v in values)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _large(values: Iterable[str]) -> tuple[LargeCommunity, ...]:
    try:
        return tuple(LargeCommunity(*parse_large_community(v)) for v in values)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def parse_routes(document: Any, defaults: RouteAttributes) -> dict[Network, RouteAttributes]:
    """A routes file: a list of prefixes, or of {prefix, communities, largeCommunities, med,
    localPref, nextHop}; or a mapping with that list under `routes`. Unset fields take the
    command line's values."""
    items = document.get("routes", []) if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise click.BadParameter("the routes file must hold a list of routes (or `routes:`)")
    routes: dict[Network, RouteAttributes] = {}
    for index, item in enumerate(items):
        entry = {"prefix": item} if isinstance(item, str) else item
        try:
            prefix = ip_network(entry["prefix"])
            route = defaults
            if "communities" in entry:
                route = replace(route, communities=_communities(entry["communities"]))
            if "largeCommunities" in entry:
                route = replace(route, large_communities=_large(entry["largeCommunities"]))
            if "med" in entry:
                route = replace(route, med=int(entry["med"]))
            if "localPref" in entry:
                route = replace(route, local_pref=int(entry["localPref"]))
            if "nextHop" in entry:
                route = replace(route, next_hop=ip_address(entry["nextHop"]))
        except (KeyError, TypeError, ValueError, click.BadParameter) as e:
            raise click.BadParameter(f"routes[{index}]: {e}") from None
        routes[prefix] = route
    return routes


def _load_file(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@bgp.command()
@click.option("--local-as", type=int, required=True, help="Our AS number (1..4294967295).")
@click.option("--router-id", required=True, help="Our BGP identifier, an IPv4 address.")
@click.option("--listen", "listen_address", default="::", show_default=True, help="Listen address.")
@click.option("--port", type=int, default=BGP_PORT, show_default=True, help="Listen port.")
@click.option("--no-listen", is_flag=True, help="Only connect; open no listening socket.")
@click.option("--peer", "peers", multiple=True, required=True, help="ADDRESS:AS[:passive]")
@click.option("--peer-port", type=int, default=BGP_PORT, show_default=True)
@click.option("--source", "source", default=None, help="Source address of our connections.")
@click.option("--announce", "announced", multiple=True, help="A prefix to announce (repeat).")
@click.option("--file", "routes_file", type=click.Path(exists=True, path_type=Path))
@click.option("--community", "communities", multiple=True, help="ASN:value (repeat).")
@click.option("--large-community", "large_communities", multiple=True, help="A:B:C (repeat).")
@click.option("--med", type=int, default=None)
@click.option("--local-pref", type=int, default=None, help="Sent to iBGP peers only.")
@click.option("--next-hop-ipv6", default=None, help="IPv6 next hop over IPv4 transport.")
@click.option("--md5-password", default=None, help="TCP-MD5 (RFC 2385) password.")
@click.option("--hold-time", type=int, default=90, show_default=True, help="0 or 3..65535.")
@click.option("--connect-retry", type=float, default=120.0, show_default=True)
@click.option("--ebgp-multihop", type=int, default=None, help="TTL towards eBGP peers.")
@click.option("--ttl-security", type=int, default=None, help="GTSM: hops to the peer.")
@click.option(
    "--max-prefixes",
    type=int,
    default=DEFAULT_MAX_PREFIXES,
    show_default=True,
    help="Cease when a peer sends more prefixes; 0: no limit.",
)
@click.option("--graceful-restart", type=int, default=120, show_default=True, help="0: off.")
@click.option("--bfd-interval", type=int, default=None, help="BFD with this TX/RX interval (ms).")
@click.option(
    "--bfd-multiplier", type=int, default=3, show_default=True, help="BFD packets missed."
)
@click.option(
    "--bfd-socket",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Run BFD in a process of its own on this unix socket (C bit set); a restarted "
    "speaker adopts its sessions.",
)
@click.option("--restarting", is_flag=True, help="Set the GR Restart State bit (after a crash).")
@click.option("--status-interval", type=float, default=0.0, help="Print peer counters every N s.")
@click.option("--log-level", default="INFO", show_default=True)
def speak(**options: Any) -> None:
    """Peer with routers and announce prefixes until Ctrl-C."""
    logging.basicConfig(
        level=options["log_level"].upper(),
        format="ts=%(asctime)s level=%(levelname)s %(message)s",
    )
    try:
        router_id = IPv4Address(options["router_id"])
    except ValueError:
        raise click.BadParameter(f"{options['router_id']!r} is not an IPv4 address") from None
    defaults = RouteAttributes(
        communities=_communities(options["communities"]),
        large_communities=_large(options["large_communities"]),
        med=options["med"],
        local_pref=options["local_pref"],
    )
    routes = _desired_routes(options["announced"], options["routes_file"], defaults)
    peers = [_peer_config(text, options) for text in options["peers"]]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_speak(options, router_id, peers, routes, defaults))


def _desired_routes(
    announced: Iterable[str], routes_file: Path | None, defaults: RouteAttributes
) -> dict[Network, RouteAttributes]:
    try:
        routes = {ip_network(p): defaults for p in announced}
    except ValueError as e:
        raise click.BadParameter(f"--announce: {e}") from None
    if routes_file is not None:
        routes.update(parse_routes(_load_file(routes_file), defaults))
    return routes


def _reload(
    speaker: Speaker,
    peers: list[PeerConfig],
    routes_file: Path,
    announced: Iterable[str],
    defaults: RouteAttributes,
) -> None:
    try:
        routes = _desired_routes(announced, routes_file, defaults)
    except (OSError, ValueError, yaml.YAMLError, click.BadParameter) as e:
        logging.getLogger(__name__).error("event=reload_failed file=%s error=%s", routes_file, e)
        return
    for peer in peers:
        speaker.set_routes(peer.address, routes)
    click.echo(f"reloaded: {len(routes)} prefix(es)")


def _peer_config(text: str, options: dict[str, Any]) -> PeerConfig:
    address, asn, passive = parse_peer(text)
    gr = options["graceful_restart"]
    try:
        return PeerConfig(
            address,
            asn,
            passive=passive,
            port=options["peer_port"],
            local_address=ip_address(options["source"]) if options["source"] else None,
            hold_time=options["hold_time"],
            connect_retry_time=options["connect_retry"],
            password=options["md5_password"],
            ebgp_multihop=options["ebgp_multihop"],
            ttl_security_hops=options["ttl_security"],
            max_prefixes=options["max_prefixes"] or None,
            graceful_restart_time=gr if gr > 0 else None,
            ipv6_next_hop=IPv6Address(options["next_hop_ipv6"])
            if options["next_hop_ipv6"]
            else None,
            bfd=_bfd_timers(options["bfd_interval"], options["bfd_multiplier"]),
        )
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _bfd_timers(interval_ms: int | None, multiplier: int) -> Timers | None:
    if interval_ms is None:
        return None
    if not 10 <= interval_ms <= 60_000:
        raise ValueError(f"--bfd-interval {interval_ms}: use 10..60000 ms")
    return Timers.from_ms(interval_ms, interval_ms, multiplier)


async def _speak(
    options: dict[str, Any],
    router_id: IPv4Address,
    peers: list[PeerConfig],
    routes: dict[Network, RouteAttributes],
    defaults: RouteAttributes,
) -> None:
    listen = None if options["no_listen"] else (options["listen_address"], options["port"])
    bfd = BfdProcess(options["bfd_socket"]) if options["bfd_socket"] else None
    if bfd is not None:
        bfd.start()
    speaker = Speaker(
        options["local_as"], router_id, listen, restarting=options["restarting"], bfd=bfd
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    routes_file: Path | None = options["routes_file"]
    if routes_file is not None:
        # SIGHUP re-reads the routes file: the new set is announced, the rest withdrawn.
        loop.add_signal_handler(
            signal.SIGHUP, _reload, speaker, peers, routes_file, options["announced"], defaults
        )
    async with speaker:
        tasks = background_tasks(speaker, options["status_interval"])
        for task in tasks:
            task.start()
        try:
            for peer in peers:
                await speaker.add_peer(peer)
                speaker.set_routes(peer.address, routes)
            if bfd is not None:
                await bfd.commit()
            click.echo(f"speaking: {len(peers)} peer(s), {len(routes)} prefix(es); Ctrl-C ends")
            await stop.wait()
        finally:
            for task in tasks:
                await task.stop()
            if bfd is not None:
                await bfd.close()  # its process stays, for the next speaker
    click.echo("stopped")


def background_tasks(
    speaker: Speaker, status_interval: float, delay: Callable[[int], float] = default_delay
) -> list[Supervised]:
    """The command's long-lived tasks (not started): the event printer, and the status
    report when `status_interval` is positive. `Supervised` logs a failure
    (`event=task_failed task=print_events|status_report`) and starts the task again after
    `delay(failures)`. Printing owes the peers nothing, so that is all a failure costs."""

    def ignore(_: Exception) -> None:
        pass

    tasks = [Supervised("print_events", lambda: _print_events(speaker), ignore, delay)]
    if status_interval > 0:
        tasks.append(
            Supervised("status_report", lambda: _report(speaker, status_interval), ignore, delay)
        )
    return tasks


async def _print_events(speaker: Speaker) -> None:
    # Closed on the way out, so that a failed printer leaves no subscription behind.
    async with contextlib.aclosing(speaker.events()) as events:
        async for event in events:
            reason = f" reason={event.reason!r}" if event.reason else ""
            click.echo(f"peer={event.peer} state={event.state.value}{reason}", nl=True)


async def _report(speaker: Speaker, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        for s in speaker.status():
            click.echo(
                f"peer={s.peer} state={s.state.value} received={s.received_prefixes} "
                f"advertised={s.advertised_prefixes} in={s.messages_in} out={s.messages_out}"
                + (f" families={','.join(s.families)}" if s.families else "")
                + (f" unsent={s.unsent_prefixes}" if s.unsent_prefixes else "")
                + (f" bfd={s.bfd}" if s.bfd else "")
            )
