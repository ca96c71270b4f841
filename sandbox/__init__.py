"""The market sandbox: one seeded synthetic market served in the vendors' public wire formats.

Polygon, Alpaca, Yahoo and Reddit paths on one address, so real adapters and official SDKs only
change their base URL; fault injection and counters under `/_sandbox`. See `app.py` for routes.
"""

from sandbox.app import create_app
from sandbox.config import FaultConfig, SandboxConfig
from sandbox.market import Market
from sandbox.server import serve

__all__ = ["FaultConfig", "Market", "SandboxConfig", "create_app", "serve"]
