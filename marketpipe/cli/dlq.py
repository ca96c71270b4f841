"""`marketpipe dlq ...`: the dead-letter queue (see :mod:`sources.dead_letters`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from marketpipe.cli.context import JsonOutput, settings_of

app = typer.Typer(help="Dead-letter queue: vendor pages and records that could not be processed.", no_args_is_help=True)


@app.command("list")
def dlq_list(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset (bars, splits, ...)")] = None,
    include_resolved: Annotated[bool, typer.Option("--all", help="include replayed letters")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: JsonOutput = False,
) -> None:
    """Open dead letters, most recent failure first."""
    import asyncio

    from db.connect import async_database_connection
    from sources.dead_letters import list_dead_letters

    async def fetch() -> list:
        async with await async_database_connection(settings_of(ctx), autocommit=True) as conn:
            return await list_dead_letters(
                conn, source=source, dataset=dataset, include_resolved=include_resolved, limit=limit
            )

    letters = asyncio.run(fetch())
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "source": d.source,
                        "dataset": d.dataset,
                        "request": d.request,
                        "error": d.error,
                        "error_type": d.error_type,
                        "attempts": d.attempts,
                        "first_seen": d.first_seen.isoformat(),
                        "last_seen": d.last_seen.isoformat(),
                        "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None,
                    }
                    for d in letters
                ],
                indent=2,
            )
        )
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for d in letters:
        state = "replayed" if d.resolved_at else f"{d.attempts} attempt(s)"
        url = d.request.get("url", "")
        typer.echo(f"#{d.id:<5} {d.source:<8} {d.dataset:<12} {state:<13} {d.last_seen:%Y-%m-%d %H:%M} {url}")
        typer.echo(f"       {d.error_type}: {d.error[:160]}")


@app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many letters")] = None,
) -> None:
    """Fetch every open dead letter again into the raw zone; idempotent, safe to repeat."""
    import asyncio
    import uuid

    from db.connect import async_database_connection
    from sources.dead_letters import replay_dead_letters
    from sources.factory import build_source
    from storage.lake import Lake
    from tasks.collection import replay_dead_letter

    settings = settings_of(ctx)
    lake = Lake.from_settings(settings.lake)
    run_id = f"dlq-replay-{uuid.uuid4()}"

    async def replay() -> dict[str, int]:
        sources: dict = {}
        async with await async_database_connection(settings, autocommit=True) as conn:

            async def fetcher(letter) -> None:
                if letter.source not in sources:
                    sources[letter.source] = build_source(letter.source, settings)
                await replay_dead_letter(sources[letter.source], letter, lake, conn, run_id)

            try:
                summary = await replay_dead_letters(conn, fetcher, source=source, dataset=dataset, limit=limit)
            finally:
                for built in sources.values():
                    await built.aclose()
        return summary.as_dict()

    summary = asyncio.run(replay())
    typer.echo(", ".join(f"{k}: {v}" for k, v in summary.items()))
