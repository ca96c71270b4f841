"""The ``marketpipe`` command line: the root app, its global options and the entry point.

Global options build the one settings object (see core.settings for the precedence) and set
PREFECT_API_URL and PREFECT_API_AUTH_STRING for everything the command runs. User mistakes end in
one clear line on stderr and a non-zero exit code, never a traceback; ``--debug`` adds the
traceback for bugs.

Each sub-app lives in its own module and is registered below in the order ``--help`` lists it:
the stack's lifecycle, the pipeline's jobs, the sandbox, Prefect deployments and workers, then the
command groups.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from loguru import logger
from typer.core import TyperGroup

from core.errors import MarketpipeError
from core.logs import configure_logging
from core.settings import load_settings, parse_overrides
from marketpipe.cli import (
    bench,
    db,
    deploy,
    dlq,
    features,
    fundamentals,
    lake,
    news,
    options,
    pipeline,
    sandbox,
    scan,
    stack,
    stream,
)


class MarketpipeGroup(TyperGroup):
    """The root command: turns a MarketpipeError from any command into one line and its exit code.

    Done here rather than around ``app()`` so that every way of invoking the app (the console
    script, Typer's test runner) behaves the same.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MarketpipeError as exc:
            if ctx.params.get("debug"):
                logger.exception("command failed")
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(
    name="marketpipe",
    cls=MarketpipeGroup,
    help="marketpipe: the market-data pipeline (embedded TimescaleDB + S3 lake + Prefect).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
# Top-level commands.
app.add_typer(stack.app)
app.add_typer(pipeline.app)
app.add_typer(sandbox.app)
app.add_typer(deploy.app)
app.add_typer(fundamentals.app)
# Command groups.
app.add_typer(db.app, name="db")
app.add_typer(dlq.app, name="dlq")
app.add_typer(bench.app, name="bench")
app.add_typer(features.app, name="features")
app.add_typer(lake.app, name="lake")
app.add_typer(news.app, name="news")
app.add_typer(options.app, name="options")
app.add_typer(scan.app, name="scan")
app.add_typer(stream.app, name="stream")


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file [default: config/data_pipeline_config.yaml]"),
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="dotenv file with secrets [default: .env]")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="override any setting, e.g. collection.batch_size=100"),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="where the embedded stack keeps its data")
    ] = None,
    db_port: Annotated[int | None, typer.Option("--db-port", help="PostgreSQL port")] = None,
    s3_port: Annotated[int | None, typer.Option("--s3-port", help="S3 lake port")] = None,
    prefect_port: Annotated[int | None, typer.Option("--prefect-port", help="Prefect server/UI port")] = None,
    sandbox_port: Annotated[int | None, typer.Option("--sandbox-port", help="market sandbox port")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="debug logging for marketpipe, tracebacks on errors")] = False,
) -> None:
    overrides = parse_overrides(set_ or [])
    named = {
        ("state_dir",): state_dir,
        ("database", "port"): db_port,
        ("lake", "port"): s3_port,
        ("prefect", "port"): prefect_port,
        ("sandbox", "port"): sandbox_port,
        ("debug",): True if debug else None,
    }
    for path, value in named.items():
        if value is None:
            continue
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = str(value) if isinstance(value, Path) else value
    settings = load_settings(config_path=config, env_file=env_file, overrides=overrides)
    configure_logging(settings.log_level, settings.debug, settings.secret_values())
    # Flows run in this process build their settings again from the same sources.
    if config is not None:
        os.environ["MARKETPIPE_CONFIG"] = str(config.absolute())
    if env_file is not None:
        os.environ["MARKETPIPE_ENV_FILE"] = str(env_file.absolute())
    os.environ.update(settings.prefect.client_environment())  # PREFECT_API_URL and its auth string
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    ctx.obj = {"settings": settings, "overrides": overrides}


def main() -> None:
    """Console-script entry point (``marketpipe``)."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
