"""`--metrics-address`, shared by `herald agent` and `herald controller`."""

from __future__ import annotations

import click

from herald.metrics.server import parse_address


def _check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_address(value)
        except ValueError as err:
            raise click.BadParameter(str(err)) from err
    return value


metrics_address_option = click.option(
    "--metrics-address",
    default=None,
    metavar="HOST:PORT",
    envvar="HERALD_METRICS_ADDRESS",
    callback=_check,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics ([IPv6]:PORT, or :PORT for "
    "every address); off by default; env HERALD_METRICS_ADDRESS.",
)
