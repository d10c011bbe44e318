"""A client sending one HTTP request every few milliseconds, and what a failover looked like
from it.

`python -m herald.lab.probe URL INTERVAL DURATION` runs inside a client's namespace: it
starts a request (new connection, HTTP/1.0) every INTERVAL seconds for DURATION seconds,
without waiting for the previous one, each with its own timeout, and prints one JSON list
of samples. Requests overlap on purpose: a request stuck on a dead owner's MAC must not
delay the next one, or the measured failover would include its timeout.

`failover(samples, since, new_owner)` (pure) turns the samples into the figures the demo,
the tests and the benchmark report.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

TIMEOUT = 1.0
_ENTERED = re.compile(rb"client=(\S+)")


@dataclass(frozen=True)
class Sample:
    start: float  # wall clock, s
    end: float
    ok: bool
    # The address the pod saw the request come from: with SNAT, the node it entered by
    # (or that node's pod bridge when the pod is local to it).
    entered: str | None


@dataclass(frozen=True)
class Failover:
    # From `since` (the owner's death) to the end of the first successful request through
    # the new owner; None if there was none.
    recovered_after: float | None
    # Requests that failed after `since`, and the time from the first one's start to the
    # start of the first successful request after it (0 when none failed).
    failed: int
    failed_window: float
    requests: int
    # The control: requests started before `since` that failed (none expected).
    failed_before: int = 0


def failover(samples: Sequence[Sample], since: float, new_owner: Collection[str]) -> Failover:
    """`new_owner`: the addresses a request entering by the new owner shows (its node and
    pod bridge addresses)."""
    after = sorted((s for s in samples if s.start >= since), key=lambda s: s.start)
    through = [s.end for s in after if s.ok and s.entered in new_owner]
    failures = [s for s in after if not s.ok]
    window = 0.0
    if failures:
        first = failures[0].start
        recovered = [s.start for s in after if s.ok and s.start > failures[-1].start]
        window = (recovered[0] if recovered else after[-1].end) - first
    return Failover(
        recovered_after=min(through) - since if through else None,
        failed=len(failures),
        failed_window=window,
        requests=len(after),
        failed_before=sum(1 for s in samples if s.start < since and not s.ok),
    )


def parse(text: str) -> list[Sample]:
    return [Sample(*row) for row in json.loads(text)]


async def _request(host: str, port: int, path: str) -> tuple[bool, str | None]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    except (OSError, TimeoutError):
        return False, None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        # HTTP/1.0: the server closes after the body; headers and body may come apart.
        body = await asyncio.wait_for(reader.read(), TIMEOUT)
    except (OSError, TimeoutError):
        return False, None
    finally:
        writer.close()
    match = _ENTERED.search(body)
    return body.startswith(b"HTTP/1.") and b" 200 " in body[:16], (
        match.group(1).decode() if match else None
    )


async def probe(host: str, port: int, interval: float, duration: float) -> list[Sample]:
    samples: list[Sample] = []

    async def one() -> None:
        start = time.time()
        ok, entered = await _request(host, port, "/")
        samples.append(Sample(start, time.time(), ok, entered))

    tasks = []
    loop = asyncio.get_running_loop()
    begin = loop.time()
    count = int(duration / interval)
    for i in range(count):  # bounded: duration / interval requests
        await asyncio.sleep(max(0.0, begin + i * interval - loop.time()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return sorted(samples, key=lambda s: s.start)


def host_port(url: str) -> tuple[str, int]:
    """`http://HOST[:PORT]/`, HOST a name, an IPv4 address or an IPv6 one in brackets."""
    match = re.fullmatch(r"http://(?:\[([0-9a-fA-F:.]+)\]|([^/:\[\]]+))(?::(\d+))?/?", url)
    if match is None:
        raise ValueError(f"{url!r}: expected http://HOST[:PORT]/")
    return match.group(1) or match.group(2), int(match.group(3) or 80)


def main(argv: list[str]) -> None:
    url, interval, duration = argv[0], float(argv[1]), float(argv[2])
    try:
        host, port = host_port(url)
    except ValueError as err:
        raise SystemExit(f"probe: {err}") from None
    samples = asyncio.run(probe(host, port, interval, duration))
    print(json.dumps([[s.start, s.end, s.ok, s.entered] for s in samples]))


if __name__ == "__main__":
    main(sys.argv[1:])
