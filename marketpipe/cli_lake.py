"""`marketpipe lake ...`: the cold lake's tiering and lifecycle commands.

Registered on the main app in ``marketpipe.cli``; commands read their settings from ``ctx.obj["settings"]``.
"""

from __future__ import annotations

import typer

lake_app = typer.Typer(help="Cold lake: tiering of old hot data to Parquet, listing, sizes, compaction.",
                       no_args_is_help=True)  # fmt: skip
