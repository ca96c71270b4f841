"""Implied volatility: our numba kernel vs vollib on the same quotes, measured in one run.

``python -m bench.options [--json] [--quotes N] [--vollib-quotes M] [--repeat R] [--threads T]``

The quotes are synthetic European options (K/S 0.5..1.5, 1 day..3 years, vol 0.05..2.0, calls and
puts, rate and yield per quote) priced by our own BSM function. The kernel solves all ``N`` of them
in one parallel call (best of ``R``); vollib's ``implied_volatility`` (pure Python, one quote per
call) is timed on the first ``M`` of the same quotes and reported per quote. A vectorized reference
(``py_vollib_vectorized``) is timed too when it is installed; it is not a dependency.

``max_rel_error`` compares our IVs with vollib's on the subsample where the price determines the
volatility to 1e-9 (``price / (sigma * vega) <= 1e6``, see tests/unit/features/test_option_kernels.py);
``max_rel_error_all`` over every quote where both return a number. ``compile_s`` is the first call
on a tiny input: JIT compilation, or loading numba's on-disk cache (``compile_source``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from typing import Any

import numba
import numpy as np
import pandas as pd

from features.options import IV_OK, bsm_price, implied_volatility, implied_volatility_kernel, option_greeks

TARGET_RATIO = 10.0
TARGET_IV_PER_S_TWO_CORES = 5_000_000
TARGET_MAX_REL_ERROR = 1e-9
KAPPA_MAX = 1e6


def synthetic_quotes(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spot = rng.uniform(10.0, 500.0, n)
    quotes = {
        "spot": spot,
        "strike": spot * rng.uniform(0.5, 1.5, n),
        "t": rng.uniform(1 / 365, 3.0, n),
        "r": rng.uniform(0.0, 0.06, n),
        "q": rng.uniform(0.0, 0.04, n),
        "is_call": rng.random(n) < 0.5,
        "vol": rng.uniform(0.05, 2.0, n),
    }
    quotes["price"] = bsm_price(
        quotes["spot"], quotes["strike"], quotes["t"], quotes["r"], quotes["q"], quotes["vol"], quotes["is_call"]
    )
    return quotes


def _vollib_ivs(quotes: dict[str, np.ndarray], m: int) -> tuple[np.ndarray, float]:
    from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv
    from vollib.helpers.exceptions import PriceIsAboveMaximum, PriceIsBelowIntrinsic

    out = np.full(m, np.nan)
    rows = zip(*(quotes[k][:m].tolist() for k in ("price", "spot", "strike", "t", "r", "q", "is_call")), strict=True)
    start = time.perf_counter()
    for i, (p, s, k, t, r, q, c) in enumerate(rows):
        # vollib raises for quotes without a solution; those stay NaN
        with contextlib.suppress(PriceIsBelowIntrinsic, PriceIsAboveMaximum, ValueError, ZeroDivisionError):
            out[i] = vollib_iv(p, s, k, t, r, q, "c" if c else "p")
    return out, time.perf_counter() - start


def _vectorized_reference(quotes: dict[str, np.ndarray]) -> float | None:
    """Seconds of py_vollib_vectorized on every quote, or None when it is not installed."""
    try:
        from py_vollib_vectorized import vectorized_implied_volatility  # type: ignore[import-not-found]
    except ImportError:
        return None
    flags = np.where(quotes["is_call"], "c", "p")
    start = time.perf_counter()
    vectorized_implied_volatility(
        quotes["price"], quotes["spot"], quotes["strike"], quotes["t"], quotes["r"], flags, q=quotes["q"],
        model="black_scholes_merton", return_as="numpy",
    )  # fmt: skip
    return time.perf_counter() - start


def run(
    quotes: int = 2_000_000, vollib_quotes: int = 20_000, repeat: int = 5, threads: int | None = None
) -> dict[str, Any]:
    hits_before = sum(implied_volatility_kernel.stats.cache_hits.values())
    start = time.perf_counter()
    option_greeks(np.array([5.0]), 100.0, np.array([100.0]), 0.5, 0.01, 0.0, True)
    compile_s = time.perf_counter() - start
    compile_source = "cache" if sum(implied_volatility_kernel.stats.cache_hits.values()) > hits_before else "jit"

    data = synthetic_quotes(quotes)
    args = tuple(data[k] for k in ("price", "spot", "strike", "t", "r", "q", "is_call"))
    used_threads = threads or numba.get_num_threads()
    load_before = os.getloadavg()[0]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        iv, reason = implied_volatility(*args, threads=used_threads)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    implied_volatility(*args, threads=1)
    single_s = time.perf_counter() - t0

    m = min(vollib_quotes, quotes)
    ref, vollib_s = _vollib_ivs(data, m)
    vectorized_s = _vectorized_reference(data)
    load_after = os.getloadavg()[0]

    greeks = option_greeks(*(a[:m] for a in args))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kappa = data["price"][:m] / (data["vol"][:m] * greeks.vega)
        rel = np.abs(iv[:m] - ref) / ref
    both = np.isfinite(rel)
    determined = both & (kappa <= KAPPA_MAX)
    max_rel_error = float(rel[determined].max()) if determined.any() else float("nan")

    kernel_rate = quotes / best
    vollib_rate = m / vollib_s
    ratio = kernel_rate / vollib_rate
    two_cores = used_threads >= 2
    targets = {
        "ratio_vs_vollib": {"target": TARGET_RATIO, "met": ratio >= TARGET_RATIO},
        "kernel_iv_per_s_two_cores": {
            "target": TARGET_IV_PER_S_TWO_CORES,
            "met": kernel_rate >= TARGET_IV_PER_S_TWO_CORES if two_cores else None,
        },
        "max_rel_error": {"target": TARGET_MAX_REL_ERROR, "met": max_rel_error <= TARGET_MAX_REL_ERROR},
    }
    return {
        "quotes": quotes,
        "solved": int((reason == IV_OK).sum()),
        "threads": used_threads,
        "cpus": os.cpu_count(),
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "repeat": repeat,
        "kernel_s": round(best, 4),
        "kernel_iv_per_s": round(kernel_rate),
        "kernel_iv_per_s_one_thread": round(quotes / single_s),
        "vollib_quotes": m,
        "vollib_s": round(vollib_s, 3),
        "vollib_iv_per_s": round(vollib_rate),
        "ratio_vs_vollib": round(ratio, 1),
        "vectorized_reference_iv_per_s": None if vectorized_s is None else round(quotes / vectorized_s),
        "compared": int(both.sum()),
        "compared_determined": int(determined.sum()),
        "max_rel_error": max_rel_error,
        "max_rel_error_all": float(rel[both].max()) if both.any() else float("nan"),
        "compile_s": round(compile_s, 3),
        "compile_source": compile_source,
        "targets": targets,
        "targets_met": all(t["met"] for t in targets.values() if t["met"] is not None),
    }


def render_table(report: dict[str, Any]) -> str:
    flat = {k: v for k, v in report.items() if k != "targets"}
    for name, target in report["targets"].items():
        met = "n/a (fewer than 2 threads)" if target["met"] is None else ("met" if target["met"] else "NOT met")
        flat[f"target {name}"] = f"{target['target']}: {met}"
    return pd.Series(flat, dtype=object).to_frame("value").to_string()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=2_000_000)
    parser.add_argument("--vollib-quotes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quotes, args.vollib_quotes, args.repeat, args.threads)
    print(json.dumps(result) if args.json else render_table(result))


if __name__ == "__main__":
    main()
