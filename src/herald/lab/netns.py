"""Network namespaces as lab hosts: create, wire, run commands in them, and tear down.

Every namespace a test's `Lab` makes is named `<prefix><pid>-<host>`, where pid is the
creating process: a later run removes the namespaces of runs that died (their pid is gone)
without touching a concurrent run's. The `herald lab` network outlives the command that
builds it, so it uses stable names (`<prefix><host>`, `stable_names=True`) and its own
record of what to remove (lab/cluster.py). Processes are started through `ip netns exec`
(which execs the command, so the Popen pid is the process itself) and ended by that pid
only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

DEFAULT_PREFIX = "hd-"


class LabError(RuntimeError):
    pass


def run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def namespaces() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pids_in(namespace: str) -> list[int]:
    out = run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(p) for p in out.split()]


def end_process(pid: int, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; a pid already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The running processes `pid` started (from /proc; empty when it is gone)."""
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in listing.read_text().split()]
    return found


def crash(pid: int) -> None:
    """SIGKILL `pid` and the processes it started, those first: a node's crash, in which
    nothing it ran (an agent's heartbeat process) lives on to say goodbye."""
    for victim in (*children(pid), pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running, and not a zombie: a lab's processes outlive the `herald lab up` that started
    them, and their zombies wait for an init that may reap them late or never (this
    machine's does not), while they hold nothing any more. Counting them as alive made
    every `end_process` wait its whole grace period: 24 s to take a lab down."""
    # Reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def delete_namespace(name: str) -> None:
    for pid in pids_in(name):
        end_process(pid)
    run(["ip", "netns", "delete", name], check=False)


def remove_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete the namespaces of earlier runs with `prefix` whose creating process is gone."""
    removed = []
    for name in namespaces():
        owner = name.removeprefix(prefix).split("-", 1)[0]
        if name.startswith(prefix) and owner.isdigit() and not alive(int(owner)):
            delete_namespace(name)
            removed.append(name)
    return removed


@dataclass
class Lab:
    """Hosts (namespaces) and processes of one test network; `close()` removes them all."""

    prefix: str = DEFAULT_PREFIX
    hosts: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stable_names: bool = False

    def __enter__(self) -> Lab:
        if not self.stable_names:
            remove_stale(self.prefix)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def ns(self, host: str) -> str:
        """The namespace name of `host`."""
        return self.hosts[host]

    def host(self, host: str, forwarding: bool = False) -> str:
        name = f"{self.prefix}{host}" if self.stable_names else f"{self.prefix}{os.getpid()}-{host}"
        run(["ip", "netns", "add", name])
        self.hosts[host] = name
        self.ip(host, "link", "set", "lo", "up")
        if forwarding:
            self.sysctl(host, "net.ipv4.ip_forward", "1")
            self.sysctl(host, "net.ipv6.conf.all.forwarding", "1")
        return name

    def ip(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["ip", "-n", self.ns(host), *args])

    def sysctl(self, host: str, key: str, value: str) -> None:
        self.exec(host, "sysctl", "-qw", f"{key}={value}")

    def exec(self, host: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.ns(host), *argv], check=check)

    def link(self, host_a: str, name_a: str, host_b: str, name_b: str) -> None:
        """A veth pair with each end created directly inside its namespace, both up."""
        run(
            [
                "ip", "link", "add", name_a, "netns", self.ns(host_a),
                "type", "veth", "peer", "name", name_b, "netns", self.ns(host_b),
            ]
        )  # fmt: skip
        self.ip(host_a, "link", "set", name_a, "up")
        self.ip(host_b, "link", "set", name_b, "up")

    def bridge(self, host: str, name: str, ports: Sequence[str] = ()) -> None:
        self.ip(host, "link", "add", name, "type", "bridge")
        self.ip(host, "link", "set", name, "up")
        for port in ports:
            self.ip(host, "link", "set", port, "master", name)

    def address(self, host: str, device: str, cidr: str) -> None:
        # nodad: an IPv6 address is usable at once, not after duplicate detection.
        extra = ["nodad"] if ":" in cidr else []
        self.ip(host, "addr", "add", cidr, "dev", device, *extra)

    def route(self, host: str, *spec: str) -> None:
        family = ["-6"] if any(":" in s for s in spec) else []
        run(["ip", *family, "-n", self.ns(host), "route", "replace", *spec])

    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Starts `argv` in `host`; output goes to `log` (appended) or nowhere; its
        environment is `env`, or this process's. Processes of a stable lab get their own
        session, so they outlive the command that started them."""
        output = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), *argv],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
                start_new_session=self.stable_names,
                env=env,
            )
        finally:
            if log is not None:
                output.close()  # type: ignore[union-attr]
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        end_process(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        if process in self.processes:
            self.processes.remove(process)

    def close(self) -> None:
        errors = []
        for process in list(self.processes):
            try:
                self.stop(process)
            except OSError as error:  # keep going: the namespaces must still go
                errors.append(str(error))
        for name in self.hosts.values():
            delete_namespace(name)
        self.hosts.clear()
        if errors:
            raise LabError("; ".join(errors))
