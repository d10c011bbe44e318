"""`herald ui`: the read-only web view (ui/server.py) of what the other commands show."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from herald.cli.agent import status_dir_option
from herald.cli.source_option import manifests_option
from herald.ui.gather import Sources
from herald.ui.server import View, is_loopback, parse_listen, serve

DEFAULT_LISTEN = "127.0.0.1:8080"


@click.command()
@click.option(
    "--listen", default=DEFAULT_LISTEN, show_default=True,
    help="ADDRESS:PORT to serve on. Loopback unless told otherwise: the page shows the "
    "cluster's addresses and flows to whoever reaches it.",
)  # fmt: skip
@status_dir_option
@manifests_option
@click.option(
    "--interval", type=click.FloatRange(0.2, 60), default=2.0, show_default=True,
    help="Seconds between two reads of the agents and the manifests.",
)  # fmt: skip
@click.option(
    "--while-exists", type=click.Path(path_type=Path), default=None, hidden=True,
    help="Stop when this file is gone (`herald demo`: the lab's state, removed by lab down).",
)  # fmt: skip
def ui(
    listen: str, status_dir: Path, manifests: Path, interval: float, while_exists: Path | None
) -> None:
    """Serve the web view: service map, flows, BGP, L2, pools (read-only)."""
    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--listen") from None
    view = View(Sources(status_dir, manifests), interval=interval)

    async def main() -> None:
        runner, bound = await serve(view, host, port)
        where = f"[{host}]" if ":" in host else host
        scope = (
            "loopback only"
            if is_loopback(host)
            else "NOT loopback: reachable by anyone who can reach this address"
        )
        click.echo(f"herald ui: http://{where}:{bound}/ (read-only; {scope})", err=True)
        try:
            while while_exists is None or while_exists.exists():
                await asyncio.sleep(1)
            click.echo(f"herald ui: {while_exists} is gone, stopping", err=True)
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(main())
        except OSError as err:
            raise click.ClickException(f"cannot serve on {listen}: {err}") from None
