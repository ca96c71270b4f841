"""`marketpipe worker | deploy`: Prefect's side: the work pool, the deployments and the workers
that run them (see :mod:`deployments`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from marketpipe.cli.context import settings_of

app = typer.Typer()


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="Prefect work pool")] = "marketpipe",
    queue: Annotated[list[str] | None, typer.Option(help="work queue(s) to poll; default: all")] = None,
    name: Annotated[str | None, typer.Option(help="worker name [default: Prefect's]")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many flow runs at once [default: any]")] = None,
) -> None:
    """Run a Prefect process worker for the pool against PREFECT_API_URL (any host)."""
    argv = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    for q in queue or []:
        argv += ["--work-queue", q]
    if name:
        argv += ["--name", name]
    if limit:
        argv += ["--limit", str(limit)]
    typer.echo(f"worker for pool {pool!r} polling {os.environ['PREFECT_API_URL']}")
    # The worker is Prefect's own process: it logs with Prefect's configuration, not ours (ours
    # routes to loguru, which only an entry point of ours sets up). Flow runs it starts are
    # marketpipe entry points and configure themselves.
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_SETTINGS_PATH"}
    env.setdefault("MARKETPIPE_HOME", str(Path.cwd()))
    # Become the worker (exec, not a child): a service manager's SIGTERM then reaches Prefect's
    # graceful shutdown directly, and no wrapper can exit first and leave a worker polling.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


@app.command()
def deploy(
    ctx: typer.Context,
    alert_webhook: Annotated[
        str | None,
        typer.Option(help="URL the alert automations notify (JSON {subject, text}); kept until changed"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="run prefect deploy even when nothing changed")] = False,
) -> None:
    """Create the `marketpipe` work pool and its queues, register every deployment of prefect.yaml
    (skipped when the server already has them as they are) and the alert automations; all
    idempotent, against the configured Prefect server."""
    from deployments.alerts import ensure_alert_automations
    from deployments.deploy import QUEUES, deploy_changed, ensure_work_pool

    created = ensure_work_pool("marketpipe", QUEUES)
    typer.echo(
        f"work pool 'marketpipe' (queues {', '.join(QUEUES)}): "
        + (f"created {', '.join(created)}" if created else "already there")
    )
    names, deployed = deploy_changed(Path(os.environ.get("MARKETPIPE_HOME") or Path.cwd()), force=force)
    for name in names:
        typer.echo(f"deployment  {name}")
    if not deployed:
        typer.echo("deployments already up to date with prefect.yaml (--force deploys again)")
    for name, outcome in ensure_alert_automations(alert_webhook).items():
        typer.echo(f"automation  {name} ({outcome})")
    typer.echo(f"Prefect UI: {settings_of(ctx).prefect.ui_url}/deployments")
