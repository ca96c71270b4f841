"""`marketpipe scan ...` (SQL scanners over the hot store) and `marketpipe bench storage`.

Registered on the main app in ``marketpipe.cli``; commands read their settings from ``ctx.obj["settings"]``.
"""

from __future__ import annotations

import typer

scan_app = typer.Typer(help="SQL scanners over the hot store (the same views scanner processes query from psql).",
                       no_args_is_help=True)  # fmt: skip
