"""One BFD session in asynchronous mode (RFC 5880 §6.8), pure: time passed in.

Usage by the shell: feed each received packet addressed to this session to `receive`,
call `expire` and then `due` at `deadline()`, send the packet `due` returns, and act on the
`StateChange`s. No echo function and no demand mode of our own; a peer in demand mode
gets no periodic packets once both sides are Up (§6.8.7), only Finals to its Polls.

Timers follow §6.8.3: while the session is not Up, packets go out at most once a second;
once Up, the configured interval applies and a Poll sequence tells the peer. The peer's
timer changes are taken at once from each packet (§6.8.7: the transmit interval is the
larger of ours and the peer's required receive interval, jittered to 75-100 %, 75-90 %
with a detect multiplier of 1).

`control_plane_independent` is the C bit (§4.1; §6.8.7: set when BFD keeps working through
a disruption of the control plane): the session runs apart from the routing protocol it
serves, so that it survives that protocol's restart; a peer then takes the session going
Down as a failure of the path, not of our control plane (RFC 5882 §4.3.2), and graceful
restart as the control plane's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from herald.bfd.packet import ControlPacket, Diag, State

SLOW_TX_US = 1_000_000


@dataclass(frozen=True)
class Timers:
    """What the BFDProfile asks for (microseconds on the wire, as here)."""

    desired_min_tx: int = 300_000
    required_min_rx: int = 300_000
    detect_mult: int = 3
    passive: bool = False

    @classmethod
    def from_ms(cls, tx_ms: int, rx_ms: int, detect_mult: int, passive: bool = False) -> Timers:
        """From the milliseconds users write (BFDProfile, `--bfd-interval`)."""
        return cls(tx_ms * 1000, rx_ms * 1000, detect_mult, passive)

    def __post_init__(self) -> None:
        if self.desired_min_tx <= 0 or self.required_min_rx <= 0:
            raise ValueError("BFD intervals must be positive")
        if not 1 <= self.detect_mult <= 255:
            raise ValueError(f"detect multiplier {self.detect_mult} outside 1..255")


@dataclass(frozen=True)
class StateChange:
    old: State
    new: State
    diag: Diag
    # The peer said AdminDown: a decision, not a path failure, and clients must not treat
    # it as one (RFC 5882 §3.2).
    by_peer_admin: bool = False


class Session:
    def __init__(
        self,
        local_discriminator: int,
        timers: Timers,
        now: float,
        jitter: Callable[[], float] = random.random,
        control_plane_independent: bool = False,
    ) -> None:
        if not 0 < local_discriminator < 2**32:
            raise ValueError("the local discriminator must be 1..2**32-1")
        self.local_discriminator = local_discriminator
        self.timers = timers
        self.control_plane_independent = control_plane_independent
        self.state = State.DOWN
        self.diag = Diag.NONE
        self.remote_state = State.DOWN
        self.remote_discriminator = 0
        self.remote_min_rx = 1  # §6.8.1: until the peer says otherwise
        self.remote_desired_min_tx = 0
        self.remote_detect_mult = 0
        self.remote_demand = False
        # The peer's C bit: its BFD survives its control plane's restart (RFC 5882 §4.3.2).
        self.remote_control_plane_independent = False
        self._jitter = jitter
        self._polling = False
        self._final_pending = False
        self._detect_at: float | None = None
        self._send_at: float | None = None if timers.passive else now

    # -- what the shell asks ---------------------------------------------------------------

    @property
    def desired_min_tx(self) -> int:
        """§6.8.3: at least a second until the session is Up."""
        if self.state is State.UP:
            return self.timers.desired_min_tx
        return max(self.timers.desired_min_tx, SLOW_TX_US)

    @property
    def detection_time(self) -> float:
        """Seconds without a packet before the session goes down (§6.8.4)."""
        interval = max(self.timers.required_min_rx, self.remote_desired_min_tx)
        return self.remote_detect_mult * interval / 1e6

    def deadline(self) -> float | None:
        times = [t for t in (self._send_at, self._detect_at) if t is not None]
        return min(times) if times else None

    # -- events ----------------------------------------------------------------------------

    def receive(self, packet: ControlPacket, now: float) -> list[StateChange]:
        """§6.8.6 from "set bfd.RemoteDiscr" on (the packet checks are `packet.decode`'s)."""
        if packet.your_discriminator not in (0, self.local_discriminator):
            return []  # the shell demultiplexes; a stray one changes nothing
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_desired_min_tx = packet.desired_min_tx
        self.remote_min_rx = packet.required_min_rx
        self.remote_detect_mult = packet.detect_mult
        self.remote_demand = packet.demand
        self.remote_control_plane_independent = packet.control_plane_independent
        if packet.final:
            self._polling = False
        self._detect_at = now + self.detection_time
        if packet.poll:
            # Answered at once with the Final bit, whatever the state (§6.8.7).
            self._final_pending = True
            self._send_at = now
        elif self._send_at is None and self.remote_min_rx:
            self._send_at = now  # passive: the peer spoke first
        if self.state is State.ADMIN_DOWN:
            return []
        changes: list[StateChange] = []
        if packet.state is State.ADMIN_DOWN:
            if self.state is not State.DOWN:
                changes += self._go(State.DOWN, Diag.NEIGHBOR_DOWN, now, by_peer_admin=True)
        elif self.state is State.DOWN:
            if packet.state is State.DOWN:
                changes += self._go(State.INIT, Diag.NONE, now)
            elif packet.state is State.INIT:
                changes += self._go(State.UP, Diag.NONE, now)
        elif self.state is State.INIT:
            if packet.state in (State.INIT, State.UP):
                changes += self._go(State.UP, Diag.NONE, now)
        elif packet.state is State.DOWN:
            changes += self._go(State.DOWN, Diag.NEIGHBOR_DOWN, now)
        if self.remote_min_rx == 0 and not self._final_pending:
            self._send_at = None  # §6.8.7: the peer wants no periodic packets
        return changes

    def expire(self, now: float) -> list[StateChange]:
        """The detection timer, if it ran out (§6.8.4): call at `deadline()`."""
        if self._detect_at is None or now < self._detect_at:
            return []
        self._detect_at = None
        # What the peer said is stale now (§6.8.1), its "send me nothing" included: a
        # session must not stay mute because of a peer that is gone.
        self.remote_discriminator = 0
        self.remote_min_rx, self.remote_desired_min_tx, self.remote_demand = 1, 0, False
        if self._send_at is None and not self.timers.passive:
            self._send_at = now
        if self.state in (State.INIT, State.UP):
            return self._go(State.DOWN, Diag.DETECTION_EXPIRED, now)
        return []

    def due(self, now: float) -> ControlPacket | None:
        """The packet to send now, if one is due; schedules the next."""
        if self._send_at is None or now < self._send_at:
            return None
        if self.timers.passive and self.remote_discriminator == 0:
            self._send_at = None
            return None
        final, self._final_pending = self._final_pending, False
        packet = self._packet(final)
        quiet = self.remote_demand and self.state is State.UP and self.remote_state is State.UP
        if self.remote_min_rx == 0 or quiet:
            self._send_at = None
        else:
            interval = max(self.desired_min_tx, self.remote_min_rx) / 1e6
            low, high = (0.75, 0.9) if self.timers.detect_mult == 1 else (0.75, 1.0)
            self._send_at = now + interval * (low + (high - low) * self._jitter())
        return packet

    def admin_down(self) -> ControlPacket:
        """Ends the session (§6.8.16): the packet that tells the peer, to send now."""
        self.state, self.diag = State.ADMIN_DOWN, Diag.ADMIN_DOWN
        self._send_at = self._detect_at = None
        return self._packet(final=False)

    def _packet(self, final: bool) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            diag=self.diag,
            detect_mult=self.timers.detect_mult,
            my_discriminator=self.local_discriminator,
            your_discriminator=self.remote_discriminator,
            desired_min_tx=self.desired_min_tx,
            required_min_rx=self.timers.required_min_rx,
            poll=self._polling and not final,
            final=final,
            control_plane_independent=self.control_plane_independent,
        )

    def _go(
        self, state: State, diag: Diag, now: float, by_peer_admin: bool = False
    ) -> list[StateChange]:
        old, self.state, self.diag = self.state, state, diag
        if State.UP in (old, state):
            # The transmit interval changes with Up (§6.8.3), from the next packet on, which
            # goes at once; coming Up, a Poll sequence tells the peer.
            self._polling = state is State.UP
            self._send_at = now if self._send_at is not None else None
        return [StateChange(old, state, diag, by_peer_admin)]
