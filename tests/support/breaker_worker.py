"""A worker process for the shared-breaker tests: ``python -m tests.support.breaker_worker SOURCE
SYMBOL [--wait]`` fetches the symbol's daily bars through the factory's source (its breaker
shared through ``ops.circuit_breakers``) and prints one JSON line: the rows or the error, and the
breaker's state in this process. With ``--wait`` it fetches once, then again after each line read
on stdin, until stdin closes: a long-lived worker whose breaker another process may open meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from core.errors import MarketpipeError
from core.settings import load_settings
from sources.factory import build_source

START, END = "2024-03-04", "2024-03-08"


async def fetch_once(source) -> dict:
    try:
        frame = await source.fetch_data(sys.argv[2], START, END)
        outcome: dict = {"rows": len(frame)}
    except MarketpipeError as exc:
        outcome = {"error": str(exc), "error_type": type(exc).__name__}
    outcome["breaker"] = source.health()
    outcome["pid"] = os.getpid()
    return outcome


async def main() -> None:
    async with build_source(sys.argv[1], load_settings()) as source:
        print(json.dumps(await fetch_once(source), default=str), flush=True)
        if "--wait" in sys.argv:
            loop = asyncio.get_running_loop()
            while await loop.run_in_executor(None, sys.stdin.readline):
                print(json.dumps(await fetch_once(source), default=str), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
