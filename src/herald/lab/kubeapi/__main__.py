"""`python -m herald.lab.kubeapi --listen 127.0.0.1:PORT --kubeconfig FILE`: run the test double.

It serves until SIGINT or SIGTERM; the kubeconfig is written once it listens, so a
process that waits for the file knows the server is up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from herald.lab.kubeapi.server import KubeApiServer


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> None:
    host, port = args.listen
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with KubeApiServer(
        host,
        port,
        history_limit=args.history,
        bookmark_interval=args.bookmark_interval,
        authorize=args.authorize,
        tls=args.tls,
    ) as server:
        for (namespace, name), path in args.service_account:
            server.write_kubeconfig(path, namespace, service_account=(namespace, name))
        # Last: the lab waits for this file to know the server is up.
        if args.kubeconfig is not None:
            server.write_kubeconfig(args.kubeconfig)
        print(f"kubeapi test double listening on {server.url}", file=sys.stderr, flush=True)
        await stop.wait()


def _parse_service_account(value: str) -> tuple[tuple[str, str], Path]:
    account, sep, path = value.partition("=")
    namespace, slash, name = account.partition("/")
    if not sep or not slash or not namespace or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME=FILE, got {value!r}")
    return (namespace, name), Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m herald.lab.kubeapi",
        description="Kubernetes API server test double (for tests and the lab only).",
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 0),
        help="HOST:PORT to listen on (port 0: any free port)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="write a kubeconfig for this server to FILE once listening",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=100_000,
        help="watch events kept before older resourceVersions get 410",
    )
    parser.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        help="seconds between BOOKMARK events on watches that allow them",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate (kubectl sends tokens only over TLS)",
    )
    parser.add_argument(
        "--authorize",
        action="store_true",
        help="enforce RBAC for service-account tokens (the admin may do anything)",
    )
    parser.add_argument(
        "--service-account",
        type=_parse_service_account,
        action="append",
        default=[],
        metavar="NAMESPACE/NAME=FILE",
        help="also write a kubeconfig that acts as this service account (repeatable)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
