"""The agent's local status API: JSON over a unix socket, one request per connection.

A client writes one line (`status`) and reads one JSON document, an `AgentStatus`: the one
model the agent fills and every reader (`herald status`, `bgp peers`, `l2 owners`, the lab
and its tests) parses, so a field cannot be renamed on one side only. A unix socket needs
no port, is reachable only from the machine (and namespace-independent: it lives in the
filesystem), and its permissions are the file's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

log = logging.getLogger(__name__)

DEFAULT_STATUS_DIR = Path("/run/herald/agents")


class _StatusModel(BaseModel):
    # Unknown fields ignored: a CLI may be older or newer than the agent it asks.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class SessionStatus(_StatusModel):
    """One BGP session of the node, as `herald bgp peers` shows it."""

    name: str
    local_as: int = Field(alias="localAS")
    peer: str
    peer_as: int = Field(alias="peerAS")
    state: str
    uptime_seconds: float | None = None
    received: int = 0
    advertised: int = 0
    last_down: str | None = None
    bfd: str | None = None
    routes: tuple[str, ...] = ()
    # What the session negotiated, and the routes it cannot carry for lack of a family.
    families: tuple[str, ...] = ()
    unsent: int = 0
    unsent_families: tuple[str, ...] = ()
    # UPDATE messages over the session's life in this agent (all its connections).
    updates_sent: int = 0
    updates_received: int = 0

    @property
    def established(self) -> bool:
        return self.state == "Established"


class L2Owner(_StatusModel):
    """One L2 VIP as a node sees it: who owns it, whether this node answers, since when."""

    vip: str
    owner: str | None = None
    answering: bool = False
    interfaces: tuple[str, ...] = ()
    since: float | None = None  # wall-clock seconds
    candidates: tuple[str, ...] = ()


class L2Status(_StatusModel):
    members: tuple[str, ...] = ()
    live: tuple[str, ...] = ()
    owners: tuple[L2Owner, ...] = ()
    # Times a VIP's owner changed, as this node decided, since the agent started.
    ownership_changes: int = 0


class BackendStatus(_StatusModel):
    """One backend of a frontend: `active` takes new flows, `terminating` drains (it takes
    new flows only while no backend is active), `not-ready` takes none."""

    address: str
    port: int
    node: str
    pod: str = ""
    state: str = "active"


class FrontendStatus(_StatusModel):
    """One VIP:port/protocol of a Service as this node's committed rules forward it."""

    service: str
    frontend: str
    mode: str
    traffic_policy: str
    backends: tuple[BackendStatus, ...] = ()
    # The Service's counters on this node (all its frontends together), when readable.
    packets: int | None = None
    bytes: int | None = None


class AgentStatus(_StatusModel):
    """What one agent applied, its sessions, its L2 view and its problems. `error` is set
    by the reader when the agent did not answer."""

    node: str
    applied_at: float | None = None
    apply_ms: float | None = None
    services: tuple[str, ...] = ()
    peers: tuple[SessionStatus, ...] = ()
    l2: L2Status | None = None
    problems: tuple[str, ...] = ()
    error: str | None = None
    frontends: tuple[FrontendStatus, ...] = ()

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = self.model_dump(mode="json", by_alias=True, exclude={"error"})
        if self.error is not None:
            data["error"] = self.error
        return data


def socket_path(directory: Path, node: str) -> Path:
    return directory / f"{node}.sock"


# The requests: `status` is cheap (every poll of `herald status`, the lab and its tests);
# `frontends` adds every frontend with its backends and counters (`herald service list`),
# which for large Services is costly, so it is built only when asked.
REQUESTS = {b"status": False, b"frontends": True}


# `observe ...` streams flow events (observe/reader.py) over the same socket.
Observe = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def serve_status(
    path: Path,
    status: Callable[[bool], AgentStatus],
    observe: Observe | None = None,
    frontends: Callable[[], Awaitable[AgentStatus]] | None = None,
) -> asyncio.Server:
    """Answers `status`, `frontends` and `observe` on a unix socket. `frontends`, when
    given, builds the costly answer off the event loop (the agent's: reading the nft
    counters lists the whole table, seconds with a large Maglev table, which on the loop
    stalled BGP past its hold time); `status(True)` is the answer otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await asyncio.wait_for(reader.readline(), timeout=2)).strip()
            body: dict[str, object]
            if request.split(b" ", 1)[0] == b"observe":
                if observe is None:
                    body = {"error": "flow events are not read on this node"}
                else:
                    await observe(request, writer)
                    await writer.drain()
                    return
            elif request in REQUESTS and REQUESTS[request] and frontends is not None:
                body = (await frontends()).to_json()
            elif request in REQUESTS:
                body = status(REQUESTS[request]).to_json()
            else:
                body = {"error": f"unknown request {request[:40]!r}; send 'status'"}
            writer.write(json.dumps(body).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError) as err:
            log.warning("event=status_request_failed error=%r", str(err))
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path=str(path))


def query(path: Path, timeout: float = 2.0, frontends: bool = False) -> AgentStatus:
    """Ask one agent for its status (blocking: for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(b"frontends\n" if frontends else b"status\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return AgentStatus.model_validate_json(b"".join(chunks))


def query_all(directory: Path, frontends: bool = False) -> list[AgentStatus]:
    """Every agent with a socket in `directory`; an agent that does not answer is listed
    with its error rather than hidden."""
    results = []
    for path in sorted(directory.glob("*.sock")):
        try:
            results.append(query(path, frontends=frontends))
        except (OSError, ValueError) as err:
            results.append(AgentStatus(node=path.stem, error=f"no answer from {path}: {err}"))
    return results
