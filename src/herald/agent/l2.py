"""The agent's L2 announcer: started when an L2AnnouncementPolicy selects the node, fed the
plan's announcements restricted to what the datapath serves here, stopped when no policy
selects the node any more.

The agent calls `apply` twice per snapshot: before the datapath commit with the VIPs both
the old and the new rules serve (so nothing about to lose its rules is answered for; only
when the announcer is already running), and after it with the VIPs the committed rules
serve. `Announcer.set_announced` takes effect before it returns, which is what makes that
order hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from herald.agent.plan import L2Plan
from herald.agent.status import L2Owner, L2Status
from herald.dataplane.model import IPAddress, IPNetwork
from herald.l2.announcer import Announcer
from herald.l2.liveness import DEFAULT_PORT, start_config
from herald.l2.policy import Announcement, address_order
from herald.netlink.links import interface_networks

log = logging.getLogger(__name__)

# What the agent reports, once per plan, while a policy selects the node and it has no key.
NO_KEY = "L2: no heartbeat key: set HERALD_L2_KEY or --l2-key-file; not answering ARP/NDP"
# A heartbeat process that ends is started again after 1 s, doubling to 30 s while it keeps
# ending within STEADY seconds of its start.
RESTART_FIRST, RESTART_MAX, STEADY = 1.0, 30.0, 60.0


@dataclass(frozen=True)
class L2Config:
    # None: no key was given (herald.l2.key.load_key). There is no default key: one in the
    # source would let anyone claim VIPs, so L2 is refused and the rest of the agent runs.
    # Not in the repr, which may end up in a log.
    key: bytes | None = field(default=None, repr=False)
    interval: float = 0.1
    multiplier: int = 5
    port: int = DEFAULT_PORT
    # "heartbeat" (every node to every other; `interval` and `multiplier` apply) or "swim"
    # (O(1) datagrams per node: `l2/swim.py`, with its own defaults).
    membership: str = "heartbeat"


def servable_only(
    announced: Sequence[Announcement], node: str, served: Collection[IPAddress]
) -> tuple[Announcement, ...]:
    """The announcements with `node` removed from the candidates of every VIP its datapath
    does not serve (pure). The VIPs stay, so the owner choice, which caps each node's load
    over all VIPs, sees the same set on every node."""
    result = []
    for announcement in announced:
        if announcement.vip not in served and node in announcement.nodes:
            announcement = Announcement(
                announcement.vip,
                announcement.services,
                tuple(c for c in announcement.candidates if c.node != node),
            )
        result.append(announcement)
    return tuple(result)


class L2Announcements:
    def __init__(
        self,
        node: str,
        config: L2Config,
        links: Callable[[], Mapping[str, Sequence[IPNetwork]]] = interface_networks,
    ) -> None:
        self.node = node
        self.config = config
        self._links = links
        self._announcer: Announcer | None = None
        self._bind: IPAddress | None = None
        self._plan: L2Plan | None = None
        # What the last apply asked for, so that a restart after a failure can ask it again.
        self._wanted: tuple[L2Plan | None, Collection[IPAddress]] = (None, ())
        # One apply at a time: a restart must not interleave with the agent's two calls.
        self._lock = asyncio.Lock()
        self._opened_at = 0.0
        self._failures = 0
        self._failure: str | None = None
        self._restart: asyncio.TimerHandle | None = None
        # Ownership changes counted by announcers that have stopped: the count in the
        # status goes on across restarts of the announcer.
        self._changes_before = 0

    @property
    def running(self) -> bool:
        return self._announcer is not None

    async def apply(self, plan: L2Plan | None, served: Collection[IPAddress]) -> list[str]:
        """Runs the announcer for `plan`; returns the problems to show in the agent's status.
        Without a key, L2 work is refused (no heartbeat, no ARP/NDP answer) and reported,
        while the agent's datapath and BGP go on."""
        async with self._lock:
            self._wanted = (plan, served)
            if self._restart is not None:
                return []  # stopped after a failure: the restart applies what is wanted
            return await self._apply(plan, served)

    def problems(self) -> list[str]:
        """What is wrong now, for the agent's status (a failure is over once restarted)."""
        return [self._failure] if self._failure else []

    async def _apply(self, plan: L2Plan | None, served: Collection[IPAddress]) -> list[str]:
        if plan is not None and self.config.key is None:
            # Never running without a key, so nothing to stop.
            return [NO_KEY]
        if plan is None or plan.address_of(self.node) is None:
            if self._announcer is not None:
                log.info("event=l2_stopped node=%s reason=no_policy_selects_node", self.node)
            self.close()
            return []
        address = plan.address_of(self.node)
        try:
            if self._announcer is None or address != self._bind:
                self.close()
                await self._open(plan, address)
            assert self._announcer is not None
            if plan.members != (self._plan.members if self._plan else None):
                self._announcer.set_peers(self._peers(plan))
            self._plan = plan
            # Links change rarely, but an interface that appears later must be usable.
            self._announcer.links = await asyncio.to_thread(self._links)
            self._announcer.set_announced(servable_only(plan.announcements, self.node, served))
        except (OSError, ValueError) as err:
            return [f"l2: {err}"]
        return []

    async def _open(self, plan: L2Plan, address: IPAddress | None) -> None:
        assert self.config.key is not None  # apply refuses L2 without one
        announcer = Announcer(self.node, await asyncio.to_thread(self._links))
        settings = (
            {}
            if self.config.membership == "swim"
            else {"interval": self.config.interval, "multiplier": self.config.multiplier}
        )
        config = start_config(self.node, self.config.key, self.config.membership, **settings)
        announcer.on_failed = self._failed
        await announcer.open(config, self._peers(plan), (str(address), self.config.port))
        self._announcer, self._bind = announcer, address
        self._opened_at = time.monotonic()
        self._failure = None
        log.info(
            "event=l2_started node=%s bind=%s:%d peers=%d membership=%s interval=%.3f "
            "detection=%.3f",
            self.node,
            address,
            self.config.port,
            len(plan.members) - 1,
            self.config.membership,
            config.interval,
            config.detection_time,
        )

    def _peers(self, plan: L2Plan) -> dict[str, tuple[str, int]]:
        return {name: (str(a), self.config.port) for name, a in plan.peers_of(self.node).items()}

    def _failed(self, error: BaseException) -> None:
        """The heartbeat process ended (the announcer has stopped answering already): start
        again with back-off, as a node whose heartbeats resume (peers see it return)."""
        if time.monotonic() - self._opened_at >= STEADY:
            self._failures = 0
        delay = min(RESTART_FIRST * 2**self._failures, RESTART_MAX)
        self._failures += 1
        self._forget_announcer()
        self._failure = (
            f"L2: heartbeat process ended ({error}); not answering ARP/NDP, starting again "
            f"in {delay:.1f} s (failure {self._failures})"
        )
        log.error(
            "event=l2_restart_scheduled node=%s delay=%.1f failures=%d error=%r",
            self.node,
            delay,
            self._failures,
            str(error),
        )
        loop = asyncio.get_running_loop()
        self._restart = loop.call_later(delay, lambda: loop.create_task(self._restarted()))

    async def _restarted(self) -> None:
        async with self._lock:
            self._restart = None
            plan, served = self._wanted
            try:
                problems = await self._apply(plan, served)
            except Exception as err:  # a restart that fails is a failure like the first
                self._failed(err)
                return
            if problems and self._announcer is None:
                self._failed(RuntimeError("; ".join(problems)))

    def close(self) -> None:
        """Stops answering at once and tells the peers, which take over without waiting."""
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        if self._announcer is not None:
            self._announcer.close()
        self._forget_announcer()

    def _forget_announcer(self) -> None:
        if self._announcer is not None:
            self._changes_before += self._announcer.ownership_changes
        self._announcer, self._bind, self._plan = None, None, None

    def status(self) -> L2Status | None:
        announcer = self._announcer
        if announcer is None:
            return None
        # Owner times are the event loop's clock; the CLI shows wall-clock times.
        offset = time.time() - asyncio.get_running_loop().time()
        interfaces: dict[IPAddress, list[str]] = {}
        for name, vips in sorted(announcer.owned().items()):
            for vip in vips:
                interfaces.setdefault(vip, []).append(name)
        owners = []
        for vip in sorted(announcer.view, key=address_order):
            owner = announcer.view[vip]
            owners.append(
                L2Owner(
                    vip=str(vip),
                    owner=owner.node,
                    answering=vip in interfaces,
                    interfaces=tuple(interfaces.get(vip, [])),
                    since=owner.since + offset if owner.since is not None else None,
                    candidates=tuple(owner.candidates),
                )
            )
        return L2Status(
            members=tuple(name for name, _ in self._plan.members) if self._plan else (),
            live=tuple(sorted(announcer.live())),
            owners=tuple(owners),
            ownership_changes=self._changes_before + announcer.ownership_changes,
        )
