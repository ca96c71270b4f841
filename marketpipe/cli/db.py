"""`marketpipe db ...`: the hot store's schema (versioned migrations and repeatable routines).

See :mod:`db.migrate` for the contract.
"""

from __future__ import annotations

import typer

from marketpipe.cli.context import settings_of

app = typer.Typer(help="Hot-store schema.", no_args_is_help=True)


@app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Apply pending migrations from db/migrations (refuses edited applied ones), then the new or
    changed routines from db/routines."""
    from db.connect import database_connection
    from db.migrate import migrate

    with database_connection(settings_of(ctx), autocommit=True) as conn:
        applied = migrate(conn)
    if applied.migrations:
        typer.echo(f"applied: {', '.join(m.filename for m in applied.migrations)}")
    if applied.routines:
        typer.echo(f"routines applied: {', '.join(r.filename for r in applied.routines)}")
    if not (applied.migrations or applied.routines):
        typer.echo("schema is up to date")


@app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Applied and pending migrations, then routines: applied, or pending (new or changed since applied)."""
    from db.connect import database_connection
    from db.migrate import applied_migrations, applied_routines, changed, discover, discover_routines, pending

    with database_connection(settings_of(ctx), autocommit=True) as conn:
        done = applied_migrations(conn)
        routines_done = applied_routines(conn)
    for m in done:
        typer.echo(f"applied  {m.version}_{m.name}.sql")
    for m in pending(discover(), done):
        typer.echo(f"pending  {m.filename}")
    routines = discover_routines()
    redo = {r.filename for r in changed(routines, routines_done)}
    for r in routines:
        typer.echo(f"{'pending' if r.filename in redo else 'applied'}  routines/{r.filename}")
