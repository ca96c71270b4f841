"""`marketpipe bench features`: the feature engine against TA-Lib, measured in one run.

Registered on the main app in ``marketpipe.cli``; commands read their settings from ``ctx.obj["settings"]``.
"""

from __future__ import annotations
