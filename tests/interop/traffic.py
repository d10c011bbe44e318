"""Backend and client programs run inside lab namespaces (`python traffic.py serve|connect`).

The backend answers every HTTP request with its own name and the client address it saw, so
a test learns which backend took a connection and whether the client address survived.
The client opens a bounded number of connections, one after the other, and writes a JSON
summary to a file (the process runs in another namespace; a file is the simplest channel).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import socketserver
import threading
import time
from pathlib import Path


class Handler(socketserver.StreamRequestHandler):
    server: Server

    def handle(self) -> None:
        self.connection.settimeout(30)
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        body = f"{self.server.name} {self.client_address[0]}\n".encode()
        head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self.wfile.write(head + body)


class Named(socketserver.BaseServer):
    """A server that knows its backend name and listens on one address family only:
    v4-mapped IPv6 addresses would hide which family a client used."""

    handler: type[socketserver.BaseRequestHandler]

    def __init__(self, name: str, address: str, port: int) -> None:
        self.name = name
        if ":" in address:
            self.address_family = socket.AF_INET6
        super().__init__((address, port), self.handler)  # type: ignore[call-arg]

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()  # type: ignore[misc]


class Server(Named, socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512
    handler = Handler


class Datagrams(socketserver.BaseRequestHandler):
    server: UdpServer

    def handle(self) -> None:
        _, sock = self.request
        sock.sendto(f"{self.server.name} {self.client_address[0]}\n".encode(), self.client_address)


class UdpServer(Named, socketserver.UDPServer):
    allow_reuse_address = True
    handler = Datagrams


def serve(name: str, port: int) -> None:
    servers: list[socketserver.BaseServer] = [
        kind(name, address, port) for kind in (Server, UdpServer) for address in ("0.0.0.0", "::")
    ]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def request(vip: str, port: int, source: str | None, sport: int, timeout: float) -> tuple[str, str]:
    """One HTTP exchange; returns (backend name, client address the backend saw)."""
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(timeout)
        if source or sport:
            sock.bind((source or ("::" if ":" in vip else "0.0.0.0"), sport))
        sock.connect((vip, port))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return parse(receive(sock))


def exchange_datagram(
    vip: str, port: int, source: str | None, sport: int, timeout: float
) -> tuple[str, str]:
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if source or sport:
            sock.bind((source or ("::" if ":" in vip else "0.0.0.0"), sport))
        sock.connect((vip, port))
        sock.send(b"who")
        name, seen = sock.recv(512).decode().split()
        return name, seen


def receive(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def parse(data: bytes) -> tuple[str, str]:
    name, seen = data.split(b"\r\n\r\n", 1)[1].decode().split()
    return name, seen


def connect(args: argparse.Namespace) -> dict[str, object]:
    backends: collections.Counter[str] = collections.Counter()
    seen: dict[str, set[str]] = collections.defaultdict(set)
    errors: collections.Counter[str] = collections.Counter()
    by_sport = {}
    started = time.monotonic()
    for i in range(args.count):
        sport = args.sport + i if args.sport else 0
        exchange = exchange_datagram if args.udp else request
        try:
            name, address = exchange(args.vip, args.port, args.source, sport, args.timeout)
        except OSError as error:
            errors[type(error).__name__] += 1
            continue
        backends[name] += 1
        seen[name].add(address)
        if sport:
            by_sport[sport] = name
    return {
        "backends": dict(backends),
        "seen": {k: sorted(v) for k, v in seen.items()},
        "errors": dict(errors),
        "by_sport": by_sport,
        "seconds": time.monotonic() - started,
    }


def hold(args: argparse.Namespace) -> dict[str, object]:
    """Open connections, wait for the `go` file, then finish them: in-flight requests."""
    socks = []
    for _ in range(args.count):
        sock = socket.create_connection((args.vip, args.port), timeout=args.timeout)
        sock.sendall(b"GET / HTTP/1.0\r\n")
        socks.append(sock)
    Path(args.out + ".ready").write_text("")
    deadline = time.monotonic() + 30
    while not os.path.exists(args.out + ".go") and time.monotonic() < deadline:
        time.sleep(0.02)
    backends: collections.Counter[str] = collections.Counter()
    errors = 0
    for sock in socks:
        try:
            sock.settimeout(5)
            sock.sendall(b"\r\n")
            backends[parse(receive(sock))[0]] += 1
        except OSError:
            errors += 1
        finally:
            sock.close()
    return {"backends": dict(backends), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("serve")
    server.add_argument("--name", required=True)
    server.add_argument("--port", type=int, default=8080)
    for name in ("connect", "hold"):
        client = sub.add_parser(name)
        client.add_argument("--vip", required=True)
        client.add_argument("--port", type=int, default=80)
        client.add_argument("--count", type=int, default=1)
        client.add_argument("--source")
        client.add_argument("--sport", type=int, default=0)
        client.add_argument("--timeout", type=float, default=2.0)
        client.add_argument("--out", required=True)
        client.add_argument("--udp", action="store_true")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.name, args.port)
        return
    result = connect(args) if args.command == "connect" else hold(args)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
