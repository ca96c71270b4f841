"""The market sandbox: one seeded synthetic market served in the vendors' public wire formats.

Polygon, Alpaca, Yahoo and Reddit paths on one address, so real adapters and official SDKs only
change their base URL; fault injection and counters under `/_sandbox`. See `app.py` for routes.

It imports nothing of marketpipe, on purpose: the sandbox is the oracle the product is checked
against, and a fake vendor that shared the product's model, calendar or parsing would share its
bugs too (a wrong session close or split factor would then agree with itself and every test would
pass). It implements the vendors' published formats from their documentation, independently.
A layer contract in pyproject.toml (`make check`) enforces it. It ships behind the optional extra
`marketpipe[sandbox]` (starlette, uvicorn); workers do not install it.
"""

from sandbox.app import create_app
from sandbox.config import FaultConfig, SandboxConfig
from sandbox.market import Market
from sandbox.server import serve

__all__ = ["FaultConfig", "Market", "SandboxConfig", "create_app", "serve"]
