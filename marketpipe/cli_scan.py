"""`marketpipe scan ...` (SQL scanners over the hot store) and `marketpipe bench storage`.

Registered on the main app in ``marketpipe.cli``; commands read their settings from ``ctx.obj["settings"]``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

scan_app = typer.Typer(help="SQL scanners over the hot store (the same views scanner processes query from psql).",
                       no_args_is_help=True)  # fmt: skip


def bench_storage(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of synthetic 1-minute bars")] = 5000,
    sessions: Annotated[int, typer.Option(min=2, help="sessions per symbol")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Scanner latencies, tiering throughput, lake/hot bytes and cold vs hot reads on synthetic bars."""
    from bench import storage as bench

    report = bench.run(ctx.obj["settings"], symbols=symbols, sessions=sessions)
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))
