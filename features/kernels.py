"""numba kernels of the standard feature set: resumable, one symbol at a time, in time order.

The kernel computes every standard feature of a symbol's bars from a handful of running scalars
and four small ring buffers (the state), in a few passes over the symbol's bars (see below). Symbols are independent,
so the outer loop is a ``prange`` over symbols (``parallel=True``); nothing is allocated inside the
kernel: the caller passes the output matrix and the per-symbol state matrix.

**Where the time goes.** A symbol's first bars (until every window is full and reaches back no
further than this call's first bar) go through a loop with the warm-up branches that keeps the
windows in the state's ring buffers. The rest, the steady bars, go through passes over the symbol's
arrays, each with few running values so that they stay in registers: returns (the logarithm as a
short series that vectorizes, see :func:`_log1p_series`), the running window sums (a window's oldest
value read from the arrays at a fixed distance), the recursive averages side by side (their
dependency chains overlap), the rolling high and low (van Herk / Gil-Werman: three comparisons per
bar whatever the data), sessions, and every square root and division in vectorized passes
(:func:`_finish`; the earlier passes park their operands in the output rows). The same operations
in the same order run on every path, so where a bar is computed never changes its bits. No
``fastmath``: it would let the compiler reorder the running sums.

**Resumable by construction.** Everything a symbol's next bar needs (running sums, EMA and Wilder
averages, OBV, the ring buffers, the current session's VWAP sums, the number of bars seen) lives in
that symbol's row of ``state``. A full computation is the kernel run from a zeroed state; an
incremental one is the same kernel run from the state a previous call left behind, so appending
bars gives bit-for-bit the values a full recompute gives. The state rows' layout is described by
:class:`StateLayout`.

**Point-in-time.** Every value at bar ``t`` is a function of bars ``<= t`` of the same symbol: the
kernel only ever reads the current bar and the state built from earlier bars.

Rules (``i`` is the bar's position in its symbol's history, counted from 0):

- Warm-up: a feature is NaN until its window is full, with TA-Lib's lookbacks: SMA/EMA/Bollinger
  from ``i = n-1``, RSI and ATR from ``i = n``, MACD line, signal and histogram from
  ``i = slow + signal - 2``, volatility from ``i = window`` (it needs ``window`` returns), volume
  z-score and distance to high/low from ``i = window - 1``, returns and the gap from ``i = 1``.
  OBV starts at the first bar's volume (as TA-Lib).
- EMA seeding is TA-Lib's: the SMA of the first ``n`` values. MACD's two EMAs both start at bar
  ``slow - 1``, each seeded by the SMA of its own window ending there (TA-Lib's MACD), and the
  signal line is an EMA of the MACD line seeded by the SMA of its first ``signal`` values.
- Bollinger bands use the population standard deviation (TA-Lib's STDDEV); volatility and the
  volume z-score use the sample one (ddof=1, as pandas).
- Windows count bars, not clock time: a gap (missing bars, a halted symbol) is not filled, and the
  next bar's return is measured against the last bar present. The opening gap measures it.
- Degenerate windows: RSI is 50 when there was no movement at all; %B is NaN when the bands have
  zero width; the volume z-score is NaN when the window's volume does not vary; VWAP is NaN until
  the session has traded volume.
- Sessions: VWAP sums restart at the first bar of each session (the exchange's local date, given
  as ``session``); VWAP is computed for intraday timeframes only. The opening gap
  ``open / previous close - 1`` is measured at the first bar of each session and carried through
  the session (for daily bars every bar opens a session).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from storage.feature_tables import FEATURES

# ---------------------------------------------------------------------------------------------
# Outputs: rows of the output matrix, in the order of the feature table's standard columns.

(
    F_RET,
    F_LOG_RET,
    F_VOL,
    F_SMA,
    F_EMA,
    F_RSI,
    F_MACD,
    F_MACD_SIG,
    F_MACD_HIST,
    F_BB_UP,
    F_BB_MID,
    F_BB_LO,
    F_BB_PCTB,
    F_ATR,
    F_OBV,
    F_VWAP,
    F_VOLUME_Z,
    F_DIST_HIGH,
    F_DIST_LOW,
    F_GAP,
) = range(len(FEATURES))

# ---------------------------------------------------------------------------------------------
# State: scalar slots of a symbol's state row, followed by its ring buffers.

(
    S_N,
    S_PREV_CLOSE,
    S_SMA_SUM,
    S_BB_SUM,
    S_BB_SUMSQ,
    S_EMA,
    S_MACD_FAST,
    S_MACD_SLOW,
    S_MACD_SIG,
    S_RSI_GAIN,
    S_RSI_LOSS,
    S_ATR,
    S_OBV,
    S_VOL_SUM,
    S_VOL_SUMSQ,
    S_VZ_SUM,
    S_VZ_SUMSQ,
    S_HIGH_MAX,
    S_HIGH_POS,
    S_LOW_MIN,
    S_LOW_POS,
    S_SESSION,
    S_VWAP_PV,
    S_VWAP_V,
    S_GAP,
    N_SCALARS,
) = range(26)


@dataclass(frozen=True)
class StateLayout:
    """Where each ring buffer sits in a state row; sizes follow the window lengths."""

    close_len: int
    ret_len: int
    volume_len: int
    hilo_len: int

    @property
    def close_at(self) -> int:
        return N_SCALARS

    @property
    def ret_at(self) -> int:
        return self.close_at + self.close_len

    @property
    def volume_at(self) -> int:
        return self.ret_at + self.ret_len

    @property
    def high_at(self) -> int:
        return self.volume_at + self.volume_len

    @property
    def low_at(self) -> int:
        return self.high_at + self.hilo_len

    @property
    def width(self) -> int:
        return self.low_at + self.hilo_len


# ---------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True, parallel=True, error_model="numpy")
def compute_standard(
    open_,
    high,
    low,
    close,
    volume,
    session,
    offsets,
    state,
    out,
    sma_n,
    ema_n,
    rsi_n,
    macd_fast,
    macd_slow,
    macd_signal,
    bb_n,
    bb_k,
    atr_n,
    vol_n,
    vol_scale,
    vz_n,
    hilo_n,
    intraday,
    close_at,
    ret_at,
    volume_at,
    high_at,
    low_at,
    close_len,
):
    """Every standard feature for every symbol; symbol ``s`` owns bars ``offsets[s]:offsets[s+1]``
    and state row ``state[s]`` (updated in place). ``out`` has one row per :data:`FEATURES`."""
    for s in prange(offsets.size - 1):
        _symbol(
            open_,
            high,
            low,
            close,
            volume,
            session,
            offsets[s],
            offsets[s + 1],
            state[s],
            out,
            sma_n,
            ema_n,
            rsi_n,
            macd_fast,
            macd_slow,
            macd_signal,
            bb_n,
            bb_k,
            atr_n,
            vol_n,
            vol_scale,
            vz_n,
            hilo_n,
            intraday,
            close_at,
            ret_at,
            volume_at,
            high_at,
            low_at,
            close_len,
        )


@njit(cache=True, error_model="numpy")
def _symbol(
    open_,
    high,
    low,
    close,
    volume,
    session,
    start,
    stop,
    st,
    out,
    sma_n,
    ema_n,
    rsi_n,
    macd_fast,
    macd_slow,
    macd_signal,
    bb_n,
    bb_k,
    atr_n,
    vol_n,
    vol_scale,
    vz_n,
    hilo_n,
    intraday,
    close_at,
    ret_at,
    volume_at,
    high_at,
    low_at,
    close_len,
):
    nan = np.nan
    # running scalars in locals (registers), written back at the end
    i = np.int64(st[S_N])
    prev_close = st[S_PREV_CLOSE]
    sma_sum, bb_sum, bb_sumsq = st[S_SMA_SUM], st[S_BB_SUM], st[S_BB_SUMSQ]
    ema, fast, slow, sig = st[S_EMA], st[S_MACD_FAST], st[S_MACD_SLOW], st[S_MACD_SIG]
    gain, loss, atr, obv = st[S_RSI_GAIN], st[S_RSI_LOSS], st[S_ATR], st[S_OBV]
    vol_sum, vol_sumsq, vz_sum, vz_sumsq = st[S_VOL_SUM], st[S_VOL_SUMSQ], st[S_VZ_SUM], st[S_VZ_SUMSQ]
    hi_max, hi_pos, lo_min, lo_pos = st[S_HIGH_MAX], np.int64(st[S_HIGH_POS]), st[S_LOW_MIN], np.int64(st[S_LOW_POS])
    cur_session, vwap_pv, vwap_v, gap = np.int64(st[S_SESSION]), st[S_VWAP_PV], st[S_VWAP_V], st[S_GAP]

    k_ema = 2.0 / (ema_n + 1.0)
    k_fast = 2.0 / (macd_fast + 1.0)
    k_slow = 2.0 / (macd_slow + 1.0)
    k_sig = 2.0 / (macd_signal + 1.0)
    # reciprocals of the constant divisors: a multiply costs a fraction of a divide (<= 1 ulp apart)
    inv_sma, inv_bb, inv_rsi, inv_atr = 1.0 / sma_n, 1.0 / bb_n, 1.0 / rsi_n, 1.0 / atr_n
    inv_vol, inv_vol1, inv_vz, inv_vz1 = 1.0 / vol_n, 1.0 / (vol_n - 1.0), 1.0 / vz_n, 1.0 / (vz_n - 1.0)
    macd_start = macd_slow - 1
    sig_start = macd_slow + macd_signal - 2

    # ring positions of bar i, advanced by one per bar (no integer division in the loop)
    pc = i % close_len
    pr = i % vol_n
    pz = i % vz_n
    ph = i % hilo_n
    # Bars from `split` on have every window full, every average seeded, and every window's oldest
    # value in this call's arrays (not only in the state's rings): the passes after this loop compute
    # them without the warm-up branches (same operations in the same order, so the same bits).
    steady = max(vol_n, sma_n, bb_n, ema_n, sig_start + 1, rsi_n + 1, atr_n + 1, vz_n, hilo_n)
    reach = max(sma_n, bb_n, vol_n, vz_n, hilo_n) - 1
    split = min(stop, start + max(0, steady - i, reach))
    for j in range(start, split):
        o, h, lo, c, v = open_[j], high[j], low[j], close[j], volume[j]
        st[close_at + pc] = c

        # returns, rolling volatility of log returns
        if i >= 1:
            q = c / prev_close
            lr = _log_ratio(q)
            out[F_RET, j] = q - 1.0
            out[F_LOG_RET, j] = lr
            st[ret_at + pr] = lr
            vol_sum += lr
            vol_sumsq += lr * lr
            if i >= vol_n:
                var = (vol_sumsq - vol_sum * vol_sum * inv_vol) * inv_vol1
                out[F_VOL, j] = math.sqrt(var) * vol_scale if var > 0.0 else 0.0
                old = st[ret_at + _next(pr, vol_n)]
                vol_sum -= old
                vol_sumsq -= old * old
            else:
                out[F_VOL, j] = nan
        else:
            out[F_RET, j] = nan
            out[F_LOG_RET, j] = nan
            out[F_VOL, j] = nan

        # SMA (TA-Lib's running sum: add the new value, emit, drop the oldest)
        sma_sum += c
        if i >= sma_n - 1:
            out[F_SMA, j] = sma_sum * inv_sma
            sma_sum -= st[close_at + _back(pc, sma_n - 1, close_len)]
        else:
            out[F_SMA, j] = nan

        # Bollinger bands: SMA middle, population standard deviation
        bb_sum += c
        bb_sumsq += c * c
        if i >= bb_n - 1:
            mean = bb_sum * inv_bb
            var = bb_sumsq * inv_bb - mean * mean
            sd = math.sqrt(var) if var > 0.0 else 0.0
            upper = mean + bb_k * sd
            lower = mean - bb_k * sd
            out[F_BB_UP, j] = upper
            out[F_BB_MID, j] = mean
            out[F_BB_LO, j] = lower
            out[F_BB_PCTB, j] = (c - lower) / (upper - lower) if upper > lower else nan
            old = st[close_at + _back(pc, bb_n - 1, close_len)]
            bb_sum -= old
            bb_sumsq -= old * old
        else:
            out[F_BB_UP, j] = nan
            out[F_BB_MID, j] = nan
            out[F_BB_LO, j] = nan
            out[F_BB_PCTB, j] = nan

        # EMA seeded by the SMA of its first window
        if i > ema_n - 1:
            ema = (c - ema) * k_ema + ema
            out[F_EMA, j] = ema
        elif i == ema_n - 1:
            ema = _ring_mean(st, close_at, close_len, i, ema_n)
            out[F_EMA, j] = ema
        else:
            out[F_EMA, j] = nan

        # MACD: both EMAs start at bar slow-1 (TA-Lib), signal = EMA of the line
        if i >= macd_start:
            if i == macd_start:
                fast = _ring_mean(st, close_at, close_len, i, macd_fast)
                slow = _ring_mean(st, close_at, close_len, i, macd_slow)
            else:
                fast = (c - fast) * k_fast + fast
                slow = (c - slow) * k_slow + slow
            line = fast - slow
            if i > sig_start:
                sig = (line - sig) * k_sig + sig
            elif i < sig_start:
                sig += line
            else:
                sig = (sig + line) / macd_signal
            if i >= sig_start:
                out[F_MACD, j] = line
                out[F_MACD_SIG, j] = sig
                out[F_MACD_HIST, j] = line - sig
            else:
                out[F_MACD, j] = nan
                out[F_MACD_SIG, j] = nan
                out[F_MACD_HIST, j] = nan
        else:
            out[F_MACD, j] = nan
            out[F_MACD_SIG, j] = nan
            out[F_MACD_HIST, j] = nan

        # RSI and ATR (Wilder): simple mean of the first n changes / true ranges, then smoothing
        if i >= 1:
            d = c - prev_close
            tr = _true_range(h, lo, prev_close)
            if i > rsi_n:
                gain *= rsi_n - 1.0
                loss *= rsi_n - 1.0
            gain += d if d > 0.0 else 0.0  # branch-free: the sign of a change is a coin flip
            loss -= d if d < 0.0 else 0.0
            if i >= rsi_n:
                gain *= inv_rsi
                loss *= inv_rsi
                total = gain + loss
                out[F_RSI, j] = 100.0 * (gain / total) if total != 0.0 else 50.0
            else:
                out[F_RSI, j] = nan
            if i > atr_n:
                atr = (atr * (atr_n - 1.0) + tr) * inv_atr
                out[F_ATR, j] = atr
            else:
                atr += tr
                if i == atr_n:
                    atr *= inv_atr
                    out[F_ATR, j] = atr
                else:
                    out[F_ATR, j] = nan
            # OBV
            obv += v * ((c > prev_close) - (c < prev_close))
        else:
            out[F_RSI, j] = nan
            out[F_ATR, j] = nan
            obv = v
        out[F_OBV, j] = obv

        # volume z-score (sample std; NaN when volume does not vary)
        st[volume_at + pz] = v
        vz_sum += v
        vz_sumsq += v * v
        if i >= vz_n - 1:
            mean = vz_sum * inv_vz
            var = (vz_sumsq - vz_sum * mean) * inv_vz1
            out[F_VOLUME_Z, j] = (v - mean) / math.sqrt(var) if var > 1e-14 * mean * mean else nan
            old = st[volume_at + _next(pz, vz_n)]
            vz_sum -= old
            vz_sumsq -= old * old
        else:
            out[F_VOLUME_Z, j] = nan

        # distance to the rolling N-bar high and low (the window includes this bar)
        st[high_at + ph] = h
        st[low_at + ph] = lo
        if i == 0 or h >= hi_max:
            hi_max, hi_pos = h, i
        elif i - hi_pos >= hilo_n:
            hi_max, hi_pos = _ring_extreme(st, high_at, hilo_n, ph, i, 1.0)
        if i == 0 or lo <= lo_min:
            lo_min, lo_pos = lo, i
        elif i - lo_pos >= hilo_n:
            lo_min, lo_pos = _ring_extreme(st, low_at, hilo_n, ph, i, -1.0)
        if i >= hilo_n - 1:
            out[F_DIST_HIGH, j] = c / hi_max - 1.0
            out[F_DIST_LOW, j] = c / lo_min - 1.0
        else:
            out[F_DIST_HIGH, j] = nan
            out[F_DIST_LOW, j] = nan

        # session-anchored VWAP and the opening gap
        if i == 0 or session[j] != cur_session:
            cur_session = session[j]
            vwap_pv = 0.0
            vwap_v = 0.0
            gap = o / prev_close - 1.0 if i >= 1 else nan
        out[F_GAP, j] = gap
        vwap_pv, vwap_v = _vwap(out, j, intraday, h, lo, c, v, vwap_pv, vwap_v)

        prev_close = c
        i += 1
        pc = _next(pc, close_len)
        pr = _next(pr, vol_n)
        pz = _next(pz, vz_n)
        ph = _next(ph, hilo_n)

    # The steady bars, in passes over the symbol's arrays: each pass carries a few running values
    # (registers, no spills) and reads a window's oldest value from the arrays themselves, so no ring
    # buffer is touched per bar; the rings get the last values once, at the end.
    if split < stop:
        n = stop - split
        _returns(close, split, stop, prev_close, out[F_RET], out[F_LOG_RET])
        _large_moves(close, split, stop, out[F_RET], out[F_LOG_RET])
        sma_sum, bb_sum, bb_sumsq, vol_sum, vol_sumsq, vz_sum, vz_sumsq = _rolling_sums(
            close,
            out[F_LOG_RET],
            volume,
            split,
            stop,
            sma_n,
            bb_n,
            vol_n,
            vz_n,
            inv_sma,
            inv_bb,
            inv_vol,
            inv_vol1,
            inv_vz,
            inv_vz1,
            sma_sum,
            bb_sum,
            bb_sumsq,
            vol_sum,
            vol_sumsq,
            vz_sum,
            vz_sumsq,
            out[F_SMA],
            out[F_BB_MID],
            out[F_BB_UP],
            out[F_VOL],
            out[F_VOLUME_Z],
            out[F_BB_LO],
        )
        ema, fast, slow, sig, gain, loss, atr, obv = _smoothed(
            high,
            low,
            close,
            volume,
            split,
            stop,
            k_ema,
            k_fast,
            k_slow,
            k_sig,
            rsi_n,
            inv_rsi,
            atr_n,
            inv_atr,
            ema,
            fast,
            slow,
            sig,
            gain,
            loss,
            atr,
            obv,
            out[F_EMA],
            out[F_MACD],
            out[F_MACD_SIG],
            out[F_MACD_HIST],
            out[F_RSI],
            out[F_BB_PCTB],
            out[F_ATR],
            out[F_OBV],
        )
        hi_max, age = _rolling_extreme(high, split, stop, hilo_n, True, out[F_DIST_HIGH])
        hi_pos = i + n - 1 - age
        lo_min, age = _rolling_extreme(low, split, stop, hilo_n, False, out[F_DIST_LOW])
        lo_pos = i + n - 1 - age
        cur_session, vwap_pv, vwap_v, gap = _sessions(
            open_,
            high,
            low,
            close,
            volume,
            session,
            split,
            stop,
            intraday,
            cur_session,
            vwap_pv,
            vwap_v,
            gap,
            out[F_GAP],
            out[F_VWAP],
        )
        _finish(
            close,
            volume,
            split,
            stop,
            vol_scale,
            bb_k,
            out[F_VOL],
            out[F_BB_UP],
            out[F_BB_MID],
            out[F_BB_LO],
            out[F_BB_PCTB],
            out[F_DIST_HIGH],
            out[F_DIST_LOW],
            out[F_RSI],
            out[F_VOLUME_Z],
        )
        _fill_ring(st, close_at, close_len, close, split, stop, i)
        _fill_ring(st, ret_at, vol_n, out[F_LOG_RET], split, stop, i)
        _fill_ring(st, volume_at, vz_n, volume, split, stop, i)
        _fill_ring(st, high_at, hilo_n, high, split, stop, i)
        _fill_ring(st, low_at, hilo_n, low, split, stop, i)
        prev_close = close[stop - 1]
        i += n

    st[S_N] = i
    st[S_PREV_CLOSE] = prev_close
    st[S_SMA_SUM], st[S_BB_SUM], st[S_BB_SUMSQ] = sma_sum, bb_sum, bb_sumsq
    st[S_EMA], st[S_MACD_FAST], st[S_MACD_SLOW], st[S_MACD_SIG] = ema, fast, slow, sig
    st[S_RSI_GAIN], st[S_RSI_LOSS], st[S_ATR], st[S_OBV] = gain, loss, atr, obv
    st[S_VOL_SUM], st[S_VOL_SUMSQ], st[S_VZ_SUM], st[S_VZ_SUMSQ] = vol_sum, vol_sumsq, vz_sum, vz_sumsq
    st[S_HIGH_MAX], st[S_HIGH_POS], st[S_LOW_MIN], st[S_LOW_POS] = hi_max, hi_pos, lo_min, lo_pos
    st[S_SESSION], st[S_VWAP_PV], st[S_VWAP_V], st[S_GAP] = cur_session, vwap_pv, vwap_v, gap


@njit(cache=True, error_model="numpy")
def _large_moves(close, first, stop, ret, log_ret):
    """libm's logarithm for the returns too large for the series."""
    for j in range(first, stop):
        if not abs(ret[j]) < LOG_SERIES_MAX:
            log_ret[j] = math.log(close[j] / close[j - 1])


@njit(cache=True, error_model="numpy")
def _rolling_sums(
    close,
    log_ret,
    volume,
    first,
    stop,
    sma_n,
    bb_n,
    vol_n,
    vz_n,
    inv_sma,
    inv_bb,
    inv_vol,
    inv_vol1,
    inv_vz,
    inv_vz1,
    sma_sum,
    bb_sum,
    bb_sumsq,
    vol_sum,
    vol_sumsq,
    vz_sum,
    vz_sumsq,
    sma,
    bb_mid,
    bb_var,
    vol_var,
    vz_mean,
    vz_var,
):
    """The running window sums: the SMA and the Bollinger middle, and the operands _finish turns into
    the bands, the volatility and the volume z-score (variances and the volume mean). A window's
    oldest value is read from the arrays, at a fixed distance behind the newest."""
    n = stop - first
    c = close[first:stop]
    c_sma, c_bb = close[first - sma_n + 1 : stop - sma_n + 1], close[first - bb_n + 1 : stop - bb_n + 1]
    lr, lr_old = log_ret[first:stop], log_ret[first - vol_n + 1 : stop - vol_n + 1]
    v, v_old = volume[first:stop], volume[first - vz_n + 1 : stop - vz_n + 1]
    s, mid, bvar = sma[first:stop], bb_mid[first:stop], bb_var[first:stop]
    var_, zm, zv = vol_var[first:stop], vz_mean[first:stop], vz_var[first:stop]
    for k in range(n):
        x = c[k]
        sma_sum += x
        s[k] = sma_sum * inv_sma
        sma_sum -= c_sma[k]
        bb_sum += x
        bb_sumsq += x * x
        mean = bb_sum * inv_bb
        mid[k] = mean
        bvar[k] = bb_sumsq * inv_bb - mean * mean
        old = c_bb[k]
        bb_sum -= old
        bb_sumsq -= old * old
        x = lr[k]
        vol_sum += x
        vol_sumsq += x * x
        var_[k] = (vol_sumsq - vol_sum * vol_sum * inv_vol) * inv_vol1
        old = lr_old[k]
        vol_sum -= old
        vol_sumsq -= old * old
        x = v[k]
        vz_sum += x
        vz_sumsq += x * x
        mean = vz_sum * inv_vz
        zm[k] = mean
        zv[k] = (vz_sumsq - vz_sum * mean) * inv_vz1
        old = v_old[k]
        vz_sum -= old
        vz_sumsq -= old * old
    return sma_sum, bb_sum, bb_sumsq, vol_sum, vol_sumsq, vz_sum, vz_sumsq


@njit(cache=True, error_model="numpy")
def _smoothed(
    high,
    low,
    close,
    volume,
    first,
    stop,
    k_ema,
    k_fast,
    k_slow,
    k_sig,
    rsi_n,
    inv_rsi,
    atr_n,
    inv_atr,
    ema,
    fast,
    slow,
    sig,
    gain,
    loss,
    atr,
    obv,
    ema_out,
    line_out,
    sig_out,
    hist_out,
    rsi_gain,
    rsi_total,
    atr_out,
    obv_out,
):
    """The recursive averages: EMA, MACD's three, RSI's average gain (and gain + loss, see _finish),
    ATR and OBV. Each is a chain of dependent operations from bar to bar; run side by side in one
    loop, their latencies overlap."""
    n = stop - first
    c, pc = close[first:stop], close[first - 1 : stop - 1]
    h, lo, v = high[first:stop], low[first:stop], volume[first:stop]
    e, ln, sg, hs = ema_out[first:stop], line_out[first:stop], sig_out[first:stop], hist_out[first:stop]
    g, t, a, ob = rsi_gain[first:stop], rsi_total[first:stop], atr_out[first:stop], obv_out[first:stop]
    for k in range(n):
        x, prev = c[k], pc[k]
        ema = (x - ema) * k_ema + ema
        e[k] = ema
        fast = (x - fast) * k_fast + fast
        slow = (x - slow) * k_slow + slow
        line = fast - slow
        sig = (line - sig) * k_sig + sig
        ln[k] = line
        sg[k] = sig
        hs[k] = line - sig
        d = x - prev
        tr = _true_range(h[k], lo[k], prev)
        gain *= rsi_n - 1.0
        loss *= rsi_n - 1.0
        gain += d if d > 0.0 else 0.0
        loss -= d if d < 0.0 else 0.0
        gain *= inv_rsi
        loss *= inv_rsi
        g[k] = gain
        t[k] = gain + loss
        atr = (atr * (atr_n - 1.0) + tr) * inv_atr
        a[k] = atr
        obv += v[k] * ((x > prev) - (x < prev))
        ob[k] = obv
    return ema, fast, slow, sig, gain, loss, atr, obv


@njit(cache=True, error_model="numpy")
def _rolling_extreme(x, first, stop, n, largest, out):
    """The rolling ``n``-bar maximum (``largest``) or minimum of ``x`` for bars ``first:stop`` into
    ``out`` (see _finish), by van Herk / Gil-Werman: cut ``x`` into blocks of ``n`` from the first
    bar's window start; a window then spans the tail of one block and the head of the next, so its
    extreme is the extreme of a suffix extreme and a prefix extreme, three comparisons per bar
    whatever the data. Returns the extreme of the last window and the latest bar holding it, counted
    back from ``stop`` (0: bar ``stop - 1``)."""
    for b in range(first - n + 1, stop - n + 1, n):
        # suffix extremes of block [b, b + n), parked at the bar whose window starts there
        end = min(b + n, stop - n + 1)
        best = x[end - 1]
        for j in range(end, b + n):
            best = _pick(best, x[j], largest)
        for j in range(end - 1, b - 1, -1):
            best = _pick(best, x[j], largest)
            out[j + n - 1] = best
        # combined with the prefix extremes of the next block
        if b + n < stop:
            best = x[b + n]
            for j in range(b + n, min(b + 2 * n - 1, stop)):
                best = _pick(best, x[j], largest)
                out[j] = _pick(best, out[j], largest)
    best, age = x[stop - 1], 0
    for r in range(1, n):
        y = x[stop - 1 - r]
        if (y > best) if largest else (y < best):
            best, age = y, r
    return best, age


@njit(cache=True, inline="always", error_model="numpy")
def _pick(a, b, largest):
    """The larger (or the smaller) of two values; ``largest`` does not change within a loop, so the
    compiler takes the test out of it."""
    if largest:
        return a if a >= b else b
    return a if a <= b else b


@njit(cache=True, error_model="numpy")
def _sessions(
    open_,
    high,
    low,
    close,
    volume,
    session,
    first,
    stop,
    intraday,
    cur_session,
    vwap_pv,
    vwap_v,
    gap,
    gap_out,
    vwap_out,
):
    """The opening gap at each session's first bar, carried through it, and the session VWAP."""
    for j in range(first, stop):
        if session[j] != cur_session:
            cur_session = session[j]
            vwap_pv = 0.0
            vwap_v = 0.0
            gap = open_[j] / close[j - 1] - 1.0
        gap_out[j] = gap
        if intraday:
            vwap_pv += (high[j] + low[j] + close[j]) * (1.0 / 3.0) * volume[j]
            vwap_v += volume[j]
            vwap_out[j] = vwap_pv / vwap_v if vwap_v > 0.0 else np.nan
        else:
            vwap_out[j] = np.nan
    return cur_session, vwap_pv, vwap_v, gap


@njit(cache=True, error_model="numpy")
def _fill_ring(st, at, length, values, first, stop, i):
    """The state's ring of ``length`` holds the last values of bars up to ``stop`` (bar ``first`` being
    history position ``i``); positions before ``first`` were written by the warm-up loop."""
    for j in range(max(first, stop - length), stop):
        st[at + (i + j - first) % length] = values[j]


@njit(cache=True, inline="always", error_model="numpy")
def _true_range(h, lo, prev_close):
    tr = h - lo
    a = abs(prev_close - h)
    if a > tr:
        tr = a
    a = abs(prev_close - lo)
    if a > tr:
        tr = a
    return tr


@njit(cache=True, inline="always", error_model="numpy")
def _vwap(out, j, intraday, h, lo, c, v, vwap_pv, vwap_v):
    """Writes bar ``j``'s session VWAP (NaN for daily bars) and returns the session's updated sums."""
    if intraday:
        vwap_pv += (h + lo + c) * (1.0 / 3.0) * v
        vwap_v += v
        out[F_VWAP, j] = vwap_pv / vwap_v if vwap_v > 0.0 else np.nan
    else:
        out[F_VWAP, j] = np.nan
    return vwap_pv, vwap_v


LOG_SERIES_MAX = 1.0 / 16.0  # |q - 1| below which log(q) is taken from the series of _log1p_series


@njit(cache=True, inline="always", error_model="numpy")
def _log1p_series(r):
    """log(1 + r) for |r| < 1/16, within two ulps: 2 atanh(s) with s = r / (2 + r), |s| < 0.033, whose
    series converges after six terms. Unlike a libm call it vectorizes, and most returns are small."""
    s = r / (2.0 + r)
    z = s * s
    tail = z * (
        0.3333333333333333
        + z
        * (
            0.2
            + z * (0.14285714285714285 + z * (0.1111111111111111 + z * (0.09090909090909091 + z * 0.07692307692307693)))
        )
    )
    return 2.0 * s + 2.0 * s * tail


@njit(cache=True, inline="always", error_model="numpy")
def _log_ratio(q):
    """log(q) of a price ratio: the series for small moves, libm for large ones (the same value the
    steady bars' vectorized pass and its large-move fallback give, so every path agrees bit for bit)."""
    r = q - 1.0
    return _log1p_series(r) if abs(r) < LOG_SERIES_MAX else math.log(q)


@njit(cache=True, error_model="numpy")
def _returns(close, first, stop, prev_close, ret, log_ret):
    """Simple returns and (series) log returns of bars ``first:stop`` of one symbol into the rows
    ``ret`` and ``log_ret``; ``prev_close`` is the close before bar ``first``. Large moves get their
    logarithm from :func:`_large_moves`. (Zero-based loops over slices: the form the vectorizer takes.)"""
    c, r, lr = close[first:stop], ret[first:stop], log_ret[first:stop]
    q = c[0] / prev_close
    r[0] = q - 1.0
    lr[0] = _log1p_series(q - 1.0)
    for k in range(1, c.size):
        q = c[k] / c[k - 1]
        r[k] = q - 1.0
        lr[k] = _log1p_series(q - 1.0)


@njit(cache=True, error_model="numpy")
def _finish(
    close,
    volume,
    first,
    stop,
    vol_scale,
    bb_k,
    vol,
    bb_up,
    bb_mid,
    bb_lo,
    bb_pctb,
    dist_high,
    dist_low,
    rsi,
    volume_z,
):
    """The square roots and divisions of the steady bars, in passes the compiler vectorizes (a scalar
    divider would otherwise be the bottleneck). The passes before it leave their operands in the
    output rows: variances in ``vol`` and ``bb_up``, rolling extremes in ``dist_high`` and
    ``dist_low``, RSI's average gain in ``rsi`` with gain + loss in ``bb_pctb``, the volume mean in
    ``volume_z`` with its variance in ``bb_lo``; the rows borrowed are consumed before they are
    written. The operations and their order are the warm-up loop's, so the values are the same bits."""
    c = close[first:stop]
    up, mid, lo, pctb = bb_up[first:stop], bb_mid[first:stop], bb_lo[first:stop], bb_pctb[first:stop]
    r = rsi[first:stop]
    for k in range(c.size):
        total = pctb[k]
        r[k] = 100.0 * (r[k] / total) if total != 0.0 else 50.0
    vol_ = volume[first:stop]
    z = volume_z[first:stop]
    for k in range(c.size):
        mean, var = z[k], lo[k]
        z[k] = (vol_[k] - mean) / math.sqrt(var) if var > 1e-14 * mean * mean else np.nan
    v = vol[first:stop]
    for k in range(c.size):
        v[k] = math.sqrt(v[k]) * vol_scale if v[k] > 0.0 else 0.0
    for k in range(c.size):
        sd = math.sqrt(up[k]) if up[k] > 0.0 else 0.0
        upper = mid[k] + bb_k * sd
        lower = mid[k] - bb_k * sd
        up[k] = upper
        lo[k] = lower
        pctb[k] = (c[k] - lower) / (upper - lower) if upper > lower else np.nan
    high = dist_high[first:stop]
    for k in range(c.size):
        high[k] = c[k] / high[k] - 1.0
    low = dist_low[first:stop]
    for k in range(c.size):
        low[k] = c[k] / low[k] - 1.0


@njit(cache=True, inline="always", error_model="numpy")
def _next(pos, length):
    """The ring position after ``pos``."""
    pos += 1
    return 0 if pos == length else pos


@njit(cache=True, inline="always", error_model="numpy")
def _back(pos, steps, length):
    """The ring position ``steps`` (< length) before ``pos``."""
    pos -= steps
    return pos + length if pos < 0 else pos


@njit(cache=True, error_model="numpy")
def _ring_mean(st, at, length, i, n):
    """Mean of the last ``n`` values written to a ring ending at position ``i`` (oldest first)."""
    total = 0.0
    for k in range(i - n + 1, i + 1):
        total += st[at + k % length]
    return total / n


@njit(cache=True, error_model="numpy")
def _ring_extreme(st, at, n, pos, i, sign):
    """The maximum (sign 1) or minimum (sign -1) of a full ring of ``n`` values whose newest (bar
    ``i``) sits at ``pos``, and the latest bar holding it. Scans from the newest value to the oldest
    in two straight runs (no modulo per value: this runs on every bar where the extreme expires)."""
    best = st[at + pos]
    best_age = 0
    for r in range(pos - 1, -1, -1):
        x = sign * st[at + r]
        if x > sign * best:
            best, best_age = st[at + r], pos - r
    for r in range(n - 1, pos, -1):
        x = sign * st[at + r]
        if x > sign * best:
            best, best_age = st[at + r], pos - r + n
    return best, i - best_age


# ---------------------------------------------------------------------------------------------
# Parameters

TRADING_DAYS_PER_YEAR = 252
SESSION_HOURS = 6.5  # NYSE regular session


@dataclass(frozen=True)
class FeatureParams:
    """Window lengths of the standard set (defaults: the textbook ones, as in issue 5)."""

    sma: int = 20
    ema: int = 20
    rsi: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb: int = 20
    bb_k: float = 2.0
    atr: int = 14
    volatility: int = 20
    volume_z: int = 20
    hilo: int = 20

    def __post_init__(self) -> None:
        for name in ("sma", "ema", "rsi", "macd_fast", "macd_slow", "macd_signal", "bb", "atr", "hilo"):
            if getattr(self, name) < 1:
                raise ValueError(f"feature window {name}={getattr(self, name)} must be at least 1 bar")
        for name in ("volatility", "volume_z"):
            if getattr(self, name) < 2:
                raise ValueError(f"feature window {name}={getattr(self, name)} must be at least 2 bars (sample std)")
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast={self.macd_fast} must be shorter than macd_slow={self.macd_slow}")
        if self.bb_k <= 0:
            raise ValueError(f"bb_k={self.bb_k} must be positive")

    @property
    def state_layout(self) -> StateLayout:
        close_len = max(self.sma, self.ema, self.bb, self.macd_fast, self.macd_slow)
        return StateLayout(close_len, self.volatility, self.volume_z, self.hilo)

    @property
    def warmup_bars(self) -> int:
        """Bars before every standard feature is defined (the longest warm-up)."""
        return max(
            self.sma - 1,
            self.ema - 1,
            self.bb - 1,
            self.rsi,
            self.atr,
            self.macd_slow + self.macd_signal - 2,
            self.volatility,
            self.volume_z - 1,
            self.hilo - 1,
            1,
        )


def periods_per_year(timeframe: str) -> float:
    """Bars of ``timeframe`` in a trading year (252 sessions of 6.5 hours), to annualize volatility."""
    from core.model import parse_timeframe

    n, unit = parse_timeframe(timeframe)
    per_unit = {
        "min": TRADING_DAYS_PER_YEAR * SESSION_HOURS * 60,
        "hour": TRADING_DAYS_PER_YEAR * SESSION_HOURS,
        "day": TRADING_DAYS_PER_YEAR,
        "week": 52,
        "month": 12,
    }[unit]
    return per_unit / n


def run_standard(
    layout_arrays: tuple[np.ndarray, ...],
    offsets: np.ndarray,
    state: np.ndarray,
    out: np.ndarray,
    params: FeatureParams,
    timeframe: str,
    intraday: bool,
) -> None:
    """Run :func:`compute_standard` with ``params``: ``layout_arrays`` are open, high, low, close,
    volume (float64) and session (int64); ``state`` and ``out`` are updated in place."""
    sl = params.state_layout
    open_, high, low, close, volume, session = layout_arrays
    # Hand symbols to the threads in small chunks rather than one half each: on shared cores a thread
    # that is descheduled for a while no longer holds back the whole call.
    previous = numba.set_parallel_chunksize(max(1, (offsets.size - 1) // (16 * numba.get_num_threads())))
    try:
        compute_standard(
            open_,
            high,
            low,
            close,
            volume,
            session,
            offsets,
            state,
            out,
            params.sma,
            params.ema,
            params.rsi,
            params.macd_fast,
            params.macd_slow,
            params.macd_signal,
            params.bb,
            float(params.bb_k),
            params.atr,
            params.volatility,
            math.sqrt(periods_per_year(timeframe)),
            params.volume_z,
            params.hilo,
            intraday,
            sl.close_at,
            sl.ret_at,
            sl.volume_at,
            sl.high_at,
            sl.low_at,
            sl.close_len,
        )
    finally:
        numba.set_parallel_chunksize(previous)
