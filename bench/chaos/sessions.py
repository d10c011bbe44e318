"""Long-lived connections through a VIP, and a server that keeps them (runs in namespaces).

`python sessions.py serve --name NAME [--port 9090]` answers each line a client sends on a
connection with `NAME CLIENT-ADDRESS`, for as long as the client keeps the connection.

`python sessions.py hold --vip VIP --count N --out FILE [--interval 0.1] [--duration 20]
[--sport BASE]` opens N connections, then sends one line on each every INTERVAL seconds
until DURATION has passed (or the file OUT.stop appears), and writes per connection: the
local port, every backend that answered, the answers, the requests that got no answer in
time, and how the connection ended (reset, closed, or alive). OUT.ready appears once all
connections are open, with their local ports (JSON). Used by bench/chaos/survival.py in
the lab and by the datapath's interop tests.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import threading
import time
from pathlib import Path

# A request without an answer this long counts as stalled; the connection lives on (TCP
# retransmits) until it is reset or the run ends.
ANSWER_TIMEOUT = 1.0


class Handler(socketserver.StreamRequestHandler):
    server: Server

    def handle(self) -> None:
        client = self.client_address[0].removeprefix("::ffff:")
        answer = f"{self.server.name} {client}\n".encode()
        while self.rfile.readline():
            self.wfile.write(answer)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512
    address_family = socket.AF_INET6

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        super().__init__(("::", port), Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def open_connection(vip: str, port: int, sport: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sport:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    sock.settimeout(5)
    sock.connect((vip, port))
    return sock


def converse(
    sock: socket.socket, interval: float, until: float, stop: Path, ready: threading.Event
) -> dict[str, object]:
    """One request every `interval` on `sock` until `until`: what came back, and when."""
    ready.wait()
    answers: list[tuple[float, str]] = []
    stalls: list[float] = []
    ended = "alive"
    ended_at = None
    sock.settimeout(ANSWER_TIMEOUT)
    buffer = b""
    pending = 0  # requests sent and not answered yet (a stalled one may be answered later)
    next_at = time.monotonic()
    while time.monotonic() < until and not stop.exists():
        try:
            sock.sendall(b"x\n")
            pending += 1
            while pending:
                while b"\n" not in buffer:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise EOFError
                    buffer += chunk
                line, buffer = buffer.split(b"\n", 1)
                pending -= 1
                answers.append((time.time(), line.decode().split()[0]))
        except TimeoutError:
            stalls.append(time.time())
        except EOFError:
            ended, ended_at = "closed", time.time()
        except OSError as err:
            ended, ended_at = type(err).__name__, time.time()
        if ended != "alive":
            break
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    sock.close()
    backends = sorted({name for _, name in answers})
    return {
        "backends": backends,
        "answers": len(answers),
        "first_backend": answers[0][1] if answers else None,
        "last_answer": answers[-1][0] if answers else None,
        "stalls": stalls,
        "ended": ended,
        "ended_at": ended_at,
    }


def hold(args: argparse.Namespace) -> None:
    stop = Path(f"{args.out}.stop")
    socks = [
        open_connection(args.vip, args.port, args.sport + i if args.sport else 0)
        for i in range(args.count)
    ]
    until = time.monotonic() + args.duration
    ready = threading.Event()
    results: list[dict[str, object]] = [{} for _ in socks]

    def run(i: int) -> None:
        sport = socks[i].getsockname()[1]
        results[i] = {"sport": sport, **converse(socks[i], args.interval, until, stop, ready)}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(socks))]
    for thread in threads:
        thread.start()
    # The local ports, for whoever wants to know the flows before they end.
    Path(f"{args.out}.ready").write_text(json.dumps([sock.getsockname()[1] for sock in socks]))
    ready.set()
    for thread in threads:
        thread.join()
    Path(args.out).write_text(json.dumps({"connections": results}))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("serve")
    server.add_argument("--name", required=True)
    server.add_argument("--port", type=int, default=9090)
    client = sub.add_parser("hold")
    client.add_argument("--vip", required=True)
    client.add_argument("--port", type=int, default=80)
    client.add_argument("--count", type=int, default=50)
    client.add_argument("--interval", type=float, default=0.1)
    client.add_argument("--duration", type=float, default=20.0)
    client.add_argument("--sport", type=int, default=0)
    client.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "serve":
        Server(args.name, args.port).serve_forever()
    else:
        hold(args)


if __name__ == "__main__":
    main()
