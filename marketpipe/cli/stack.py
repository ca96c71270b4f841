"""`marketpipe up | down | status`: the embedded stack's lifecycle (see :mod:`stack.supervisor`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from marketpipe.cli.context import JsonOutput, settings_of

app = typer.Typer()


@app.command()
def up(
    ctx: typer.Context,
    replica: Annotated[
        bool,
        typer.Option(
            "--replica",
            help="also start the read replica, a streaming hot standby (reads use it: database.read_replica.enabled)",
        ),
    ] = False,
) -> None:
    """Start the embedded stack (PostgreSQL+TimescaleDB, S3 lake, Prefect server, market sandbox)."""
    from stack.supervisor import Stack

    settings = settings_of(ctx)
    stack = Stack(settings)
    report = stack.up(replica=replica)
    status = stack.status()
    for name in report.started:
        typer.echo(f"started  {name:<9} {status.components[name].address}")
    for name in report.already_running:
        typer.echo(f"running  {name:<9} {status.components[name].address} (already)")
    if report.migrations_applied:
        typer.echo(f"migrations applied: {', '.join(report.migrations_applied)}")
    if report.routines_applied:
        typer.echo(f"routines applied: {', '.join(report.routines_applied)}")
    for update in report.extensions_updated:
        typer.echo(f"TimescaleDB updated in place: {update}")
    if report.compression_policies_set:
        typer.echo(f"compression policies set: {', '.join(report.compression_policies_set)}")
    ts = status.timescaledb
    if ts:
        typer.echo(f"TimescaleDB {ts.version} ({ts.edition} edition)")
    typer.echo(f"Prefect UI: {settings.prefect.ui_url}")
    typer.echo(f"stack healthy in {report.seconds:.1f} s; state in {settings.state_dir}")


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every component the stack started; the data stays in the state directory."""
    from stack.supervisor import Stack

    stopped = Stack(settings_of(ctx)).down()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(ctx: typer.Context, as_json: JsonOutput = False) -> None:
    """Health of each component and TimescaleDB's background jobs; exits 1 when any component is
    unhealthy (a failed job is a health issue: `marketpipe health`)."""
    from stack.supervisor import Stack

    result = Stack(settings_of(ctx)).status()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for c in result.components.values():
            mark = "healthy  " if c.healthy else "UNHEALTHY"
            pid = f"pid {c.pid}" if c.pid else "-"
            typer.echo(f"{c.name:<9} {mark} {c.address:<28} {pid:<10} {c.detail}")
        ts = result.timescaledb
        if ts:
            typer.echo(f"TimescaleDB {ts.version}, edition: {ts.edition}")
        if result.jobs:
            for line in result.jobs.lines():
                typer.echo(line)
        if result.replication and result.replication.lagging:
            rep = result.replication
            typer.echo(
                f"replica LAGGING: {rep.state.lag_seconds if rep.state.lag_seconds is not None else 'unknown'} s, "
                f"more than database.read_replica.max_lag_seconds ({rep.max_lag_seconds:g} s)"
            )
    if not result.healthy:
        raise typer.Exit(1)
