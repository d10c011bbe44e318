"""`herald ui` in the background, for `herald demo`: it outlives the demo (the lab stays up
for exploring), so it runs in a session of its own, logging to a file, and its pid is kept
so that the next demo replaces it rather than piling up servers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from herald.lab.cluster import STATE

PID_FILE = Path("/run/herald/ui.pid")
LOG_FILE = Path("/run/herald/ui.log")
LISTEN = "127.0.0.1:8080"
URL = re.compile(r"herald ui: (http://\S+)")
START_TIMEOUT = 15.0


def start_ui(argv: list[str], listen: str = LISTEN, lab_state: Path = STATE) -> str:
    """Start `argv` (the herald command, with `ui` and its options appended here) and return
    the URL it serves. If `listen`'s port is taken, any free port of the same address. It
    stops by itself when `lab_state` is gone (`herald lab down`)."""
    stop_ui()
    host = listen.rpartition(":")[0]
    argv = [*argv, "ui", "--while-exists", str(lab_state)]
    url = _start(argv, listen) or _start(argv, f"{host}:0")
    if url is None:
        raise OSError(f"herald ui did not start; see {LOG_FILE}")
    return url


def stop_ui() -> None:
    """Stop the server a previous `start_ui` started, if it still runs."""
    try:
        pid = int(PID_FILE.read_text())
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        # Only if that pid is still our `herald ui` (pids are reused).
        if b"\0--while-exists\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    PID_FILE.unlink(missing_ok=True)


def _start(argv: list[str], listen: str) -> str | None:
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOG_FILE.open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "--listen", listen],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = URL.search(LOG_FILE.read_text(errors="replace"))
        if found:
            PID_FILE.write_text(str(proc.pid))
            return found.group(1)
        if proc.poll() is not None:
            return None
        time.sleep(0.1)
    proc.terminate()
    return None


def ui_line(argv: list[str]) -> str:
    """What a demo prints: the web view's URL, or why there is none (the demo goes on)."""
    try:
        url = start_ui(argv)
    except OSError as err:
        return f"web view not started: {err}"
    return f"web view (read-only, loopback only): open {url}   (log: {LOG_FILE})"
