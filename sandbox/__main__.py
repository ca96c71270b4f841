"""`python -m sandbox --host H --port P --seed S [--as-of YYYY-MM-DD] [--now INSTANT]`."""

from __future__ import annotations

import argparse
from datetime import date

from sandbox.clock import parse_now
from sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Serve the seeded synthetic market in vendors' wire formats."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="pin 'today', served whole (default: the current New York date, served up to the wall clock)",
    )
    parser.add_argument(
        "--now",
        type=parse_now,
        default=None,
        help="pin the clock at an instant, e.g. 2024-06-03T14:11:00-04:00 (naive: New York); nothing later is served",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.seed, args.as_of, args.log_level, args.now)


if __name__ == "__main__":
    main()
