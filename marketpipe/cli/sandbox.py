"""`marketpipe sandbox`: the market sandbox (a fake vendor) in the foreground.

The only command module that imports the ``sandbox`` package, which is an optional extra
(``marketpipe[sandbox]``): it is imported when the command runs, so the rest of the CLI works
without it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from core.errors import PortInUseError
from marketpipe.cli.context import settings_of
from stack.daemon import port_free

app = typer.Typer()


@app.command()
def sandbox(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="bind address [default: sandbox.host]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: sandbox.port]")] = None,
    seed: Annotated[int | None, typer.Option(help="market seed [default: sandbox.seed]")] = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="pin the market clock, e.g. 2024-06-03T14:11 (naive: New York); nothing later is served "
            "[default: the wall clock]"
        ),
    ] = None,
) -> None:
    """Serve the market sandbox in the foreground (Polygon, Alpaca, Yahoo, Reddit wire formats)."""
    from sandbox.clock import parse_now
    from sandbox.server import serve

    try:
        pinned = parse_now(now) if now else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--now") from None
    settings = settings_of(ctx).sandbox
    host, port, seed = host or settings.host, port or settings.port, seed if seed is not None else settings.seed
    if not port_free(host, port):
        raise PortInUseError("sandbox", host, port, "sandbox.port or --port")
    clock = f"clock pinned at {pinned.isoformat()}" if pinned else "wall clock"
    typer.echo(f"market sandbox (seed {seed}, {clock}) on http://{host}:{port}; health: /_sandbox/health; Ctrl+C stops")
    serve(host, port, seed, now=pinned)
