"""What every command receives from the global options: the one settings object and the overrides.

The root callback in :mod:`marketpipe.cli` builds both once per invocation and keeps them in the
click context; commands read them here instead of loading settings again.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from core.settings import Settings

# ``--json`` on the commands that print a status or a list.
JsonOutput = Annotated[bool, typer.Option("--json", help="machine-readable output")]
# ``--json`` on the commands that print one report (benchmarks, the lake).
JsonReport = Annotated[bool, typer.Option("--json", help="one JSON object")]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the global options built for this invocation."""
    return ctx.obj["settings"]


def overrides_of(ctx: typer.Context) -> dict[str, Any]:
    """The ``--set`` (and named option) overrides, for flows that build their settings again."""
    return ctx.obj["overrides"]
