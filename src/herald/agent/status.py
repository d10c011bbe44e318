"""The agent's local status API: JSON over a unix socket, one request per connection.

A client writes one line (`status`) and reads one JSON document. A unix socket needs no
port, is reachable only from the machine (and namespace-independent: it lives in the
filesystem), and its permissions are the file's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_STATUS_DIR = Path("/run/herald/agents")


def socket_path(directory: Path, node: str) -> Path:
    return directory / f"{node}.sock"


async def serve_status(path: Path, status: Callable[[], dict[str, Any]]) -> asyncio.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await asyncio.wait_for(reader.readline(), timeout=2)).strip()
            if request == b"status":
                body = status()
            else:
                body = {"error": f"unknown request {request[:40]!r}; send 'status'"}
            writer.write(json.dumps(body, default=str).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError) as err:
            log.warning("event=status_request_failed error=%r", str(err))
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path=str(path))


def query(path: Path, timeout: float = 2.0) -> dict[str, Any]:
    """Ask one agent for its status (blocking: for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(b"status\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    data: dict[str, Any] = json.loads(b"".join(chunks))
    return data


def query_all(directory: Path) -> list[dict[str, Any]]:
    """Every agent with a socket in `directory`; an agent that does not answer is listed
    with its error rather than hidden."""
    results = []
    for path in sorted(directory.glob("*.sock")):
        try:
            results.append(query(path))
        except (OSError, ValueError) as err:
            results.append({"node": path.stem, "error": f"no answer from {path}: {err}"})
    return results
