"""A lab backend pod: answers every HTTP request with its own name, its node and the client.

Run as `python -m herald.lab.pod --name NAME --node NODE --port PORT` inside the pod's
namespace. The answer names the pod and node so a client can see where each request went,
and the client address so Local traffic policy (client address kept) can be seen too.
"""

from __future__ import annotations

import argparse
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    # socketserver's default listen backlog is 5: a client opening 100 connections a second
    # (bench/l2) on a busy machine overflowed it, and each dropped SYN cost a 1 s retransmit
    # that looked like a failover's failed request.
    request_queue_size = 128

    def server_bind(self) -> None:
        # One socket for IPv4 and IPv6 clients alike.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that resets its connection is the client's business; a traceback each
        # time (socketserver's default) would fill the pod's log, which the lab kubelet
        # keeps for what a pod says when it fails to start.
        pass


def handler(pod: str, node: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            client = self.client_address[0].removeprefix("::ffff:")
            body = f"pod={pod} node={node} client={client}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the lab's logs

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    try:
        server = DualStackServer(("::", args.port), handler(args.name, args.node))
    except OSError as err:
        # One line, the last of the pod's log: the lab kubelet reports it as the reason.
        sys.exit(f"pod {args.name}: cannot listen on port {args.port}: {err}")
    server.serve_forever()


if __name__ == "__main__":
    main()
