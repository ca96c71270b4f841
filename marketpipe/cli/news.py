"""`marketpipe news ...`: news stories in the hot store.

``news search TEXT`` finds the stories nearest in meaning to a text (sentence embeddings,
features/embeddings.py, searched through pgvector's HNSW index); ``news like STORY_ID`` the stories
nearest to a stored one. Both take a time range (``--since``/``--until``: an ISO date or time, UTC
unless it says otherwise, or an age such as ``7d``, ``12h``, ``30m``) and ``--symbols``.
``news latest`` lists the newest stored items (ours and the vendor's sentiment beside each), ``news
story ID`` one story with every vendor's copy of it (storage/news.py). ``news embed`` embeds the
stored stories without a vector by the configured model (after ``embeddings.model`` changed).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import RequestError
from marketpipe.cli.context import JsonOutput, settings_of

if TYPE_CHECKING:
    from storage.story_vectors import StoryHit

app = typer.Typer(help="News stories: search by meaning, more like a story.", no_args_is_help=True)

Since = Annotated[
    str | None, typer.Option(help="first seen at or after: ISO date/time (UTC unless given) or an age: 7d, 12h, 30m")
]
Until = Annotated[str | None, typer.Option(help="first seen before: ISO date/time or an age, as --since")]
Symbols = Annotated[str | None, typer.Option(help="only stories about any of these tickers, comma-separated")]
Limit = Annotated[int, typer.Option("--limit", "-k", help="at most this many stories")]

_AGE = re.compile(r"^(?P<n>\d+)(?P<unit>[dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_when(value: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """``--since``/``--until``: an ISO date (midnight UTC), an ISO time (UTC when it names no zone),
    or an age before now (``7d``, ``12h``, ``30m``)."""
    if value is None:
        return None
    text = value.strip()
    age = _AGE.match(text)
    if age:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[age["unit"]]: int(age["n"])})
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise RequestError(
            f"{option} {value!r} is neither an ISO date/time (2026-03-02, 2026-03-02T14:30) nor an age (7d, 12h, 30m)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_symbols(value: str | None) -> list[str] | None:
    if value is None:
        return None
    symbols = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not symbols:
        raise RequestError(f"--symbols {value!r} names no ticker; give e.g. --symbols AAPL,MSFT")
    return symbols


def _print(hits: list[StoryHit], as_json: bool, empty: str) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "story_id": h.story_id,
                        "first_seen": h.first_seen.isoformat(),
                        "similarity": round(h.similarity, 6),
                        "headline": h.headline,
                        "symbols": list(h.symbols),
                        "url": h.canonical_url,
                    }
                    for h in hits
                ]
            )
        )
        return
    if not hits:
        typer.echo(empty)
        return
    for h in hits:
        symbols = ",".join(h.symbols) or "-"
        typer.echo(f"{h.similarity:6.3f}  {h.story_id:>12}  {h.first_seen:%Y-%m-%d %H:%M}  {symbols:<16}  {h.headline}")


def _model(ctx: typer.Context):  # -> EmbeddingModel
    from features.embeddings import load_model

    settings = settings_of(ctx)
    return load_model(
        settings.embeddings.model,
        batch_size=settings.embeddings.batch_size,
        cache_dir=settings.embeddings.cache_dir,
    )


@app.command("search")
def news_search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="what the stories should be about, in words")],
    since: Since = None,
    until: Until = None,
    symbols: Symbols = None,
    limit: Limit = 10,
    as_json: JsonOutput = False,
) -> None:
    """The stories nearest in meaning to TEXT (similarity, story id, first seen, symbols, headline)."""
    from db.connect import database_connection
    from features.news_search import search_news
    from storage.story_vectors import count_story_vectors

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    wanted = parse_symbols(symbols)
    model = _model(ctx)
    with database_connection(settings_of(ctx), autocommit=True) as conn:
        hits = search_news(conn, text, k=limit, since=start, until=end, symbols=wanted, model=model)
        empty = f"no stories match {text!r} in that range"
        if not hits and count_story_vectors(conn, model.name) == 0 and count_story_vectors(conn) > 0:
            empty = (
                f"no story has a {model.name} vector (embeddings.model) but some have another model's: "
                "`marketpipe news embed` re-embeds the stored stories"
            )
    _print(hits, as_json, empty)


@app.command("like")
def news_like(
    ctx: typer.Context,
    story_id: Annotated[int, typer.Argument(help="a story id (news search prints them)")],
    since: Since = None,
    until: Until = None,
    symbols: Symbols = None,
    limit: Limit = 10,
    as_json: JsonOutput = False,
) -> None:
    """More like this story: the stories nearest to STORY_ID's (itself left out)."""
    from db.connect import database_connection
    from features.news_search import stories_like

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    wanted = parse_symbols(symbols)
    model = _model(ctx)
    with database_connection(settings_of(ctx), autocommit=True) as conn:
        hits = stories_like(conn, story_id, k=limit, since=start, until=end, symbols=wanted, model=model)
    _print(hits, as_json, f"no other stories near story {story_id} in that range")


@app.command("embed")
def news_embed(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    symbols: Symbols = None,
    as_json: JsonOutput = False,
) -> None:
    """Embed the news stories whose vectors are owed, then the stored stories that have no vector
    by the configured model (embeddings.model). Owed: queued by a write whose vectors did not follow
    (a process killed between a batch's items and its vectors, an embedding that failed); the queue
    is emptied whatever --since, --until and --symbols say, which choose the stories without a
    vector (after a change of model, or news stored with embedding off). A transaction per 500
    stories: an interrupted run keeps what it stored; run it again to continue."""
    from core.progress import terminal_progress
    from db.connect import database_connection
    from pipeline.news import embed_in_batches, embed_queued
    from storage.story_vectors import queued_story_count, stories_without_vectors

    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    wanted = parse_symbols(symbols)
    model = _model(ctx)
    with database_connection(settings_of(ctx), autocommit=True) as conn:
        owed = queued_story_count(conn)
        with terminal_progress(owed, f"embedding owed stories ({model.name})") as advance:
            owed_embedded = embed_queued(conn, model, advance=advance)
        todo = stories_without_vectors(conn, model.name, start, end, wanted)
        with terminal_progress(len(todo), f"embedding stories ({model.name})") as advance:
            embedded = embed_in_batches(conn, todo, model, advance=advance)
    if as_json:
        summary = {"model": model.name, "owed": owed, "owed_embedded": owed_embedded}
        typer.echo(json.dumps({**summary, "stories": len(todo), "embedded": embedded}))
        return
    if owed:
        typer.echo(f"embedded {owed_embedded:,} of {owed:,} stories whose vectors were owed")
    typer.echo(f"embedded {embedded:,} of {len(todo):,} stories without a {model.name} vector")


Kind = Annotated[str | None, typer.Option(help="news (articles) or social (posts); both when not given")]


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


@app.command("latest")
def news_latest(
    ctx: typer.Context,
    symbols: Symbols = None,
    kind: Kind = None,
    limit: Limit = 20,
    as_json: JsonOutput = False,
) -> None:
    """The newest stored items (time, source, story id, our sentiment, the vendor's, symbols, headline)."""
    from db.connect import database_connection
    from storage.news import latest_items

    if kind not in (None, "news", "social"):
        raise RequestError(f"--kind {kind!r} is not a kind of item: use news or social")
    if limit < 1 or limit > 1000:
        raise RequestError(f"--limit {limit} is out of range: use 1..1000")
    wanted = parse_symbols(symbols)
    with database_connection(settings_of(ctx), autocommit=True) as conn:
        items = latest_items(conn, symbols=wanted, kind=kind, limit=limit)
    if as_json:
        typer.echo(json.dumps([{k: _plain(v) for k, v in item.items()} for item in items]))
        return
    if not items:
        typer.echo(
            "no news stored"
            + (f" about {','.join(wanted)}" if wanted else "")
            + ": run marketpipe ingest --data-type news"
        )
        return
    for item in items:
        ours = "   -  " if item["sentiment"] is None else f"{item['sentiment']:+.2f}"
        theirs = "   -  " if item["vendor_sentiment"] is None else f"{item['vendor_sentiment']:+.2f}"
        symbols_text = ",".join(item["symbols"]) or "-"
        typer.echo(
            f"{item['published_at']:%Y-%m-%d %H:%M}  {item['source']:<8} {item['story_id']:>20}  {ours} {theirs}"
            f"  {symbols_text:<12}  {item['headline']}"
        )


@app.command("story")
def news_story(
    ctx: typer.Context,
    story_id: Annotated[int, typer.Argument(help="a story id (news latest and news search print them)")],
    as_json: JsonOutput = False,
) -> None:
    """One story: its first headline, polarity, and every copy of it (vendor, id, time, URL)."""
    from db.connect import database_connection
    from storage.news import story

    with database_connection(settings_of(ctx), autocommit=True) as conn:
        found = story(conn, story_id)
    if found is None:
        raise RequestError(f"no story {story_id} is stored: take an id from marketpipe news latest")
    if as_json:
        out = {k: _plain(v) for k, v in found.items() if k != "members"}
        out["members"] = [{k: _plain(v) for k, v in m.items()} for m in found["members"]]
        typer.echo(json.dumps(out))
        return
    polarity = "-" if found["polarity"] is None else f"{found['polarity']:+.2f}"
    typer.echo(f"story {found['story_id']}: {found['headline']}")
    typer.echo(
        f"first seen {found['first_seen']:%Y-%m-%d %H:%M} UTC, {found['items']} item(s), polarity {polarity},"
        f" symbols {','.join(found['symbols']) or '-'}"
    )
    for m in found["members"]:
        typer.echo(
            f"  {m['published_at']:%Y-%m-%d %H:%M}  {m['source']:<8} {m['id']:<16} {m['headline']}  {m['url'] or ''}"
        )
