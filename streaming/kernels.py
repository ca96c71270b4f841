"""numba kernels of :mod:`streaming.windows`: trades into per-window bar aggregates, incrementally.

Everything the windows remember lives in one :class:`WindowState` record of numpy arrays and two
numba typed dicts, so each kernel takes the state and a batch's columns and nothing else:

- **rows**: the retained trades (``rows_i`` int64 fields, ``rows_price``), slots taken from and
  returned to a free stack (``free_rows``); a row is released when every window holding it is.
  ``row_slot[row, tf]`` is the row's window in timeframe ``tf`` (-1: none), ``row_next[row, tf]``
  links the rows of one window (the window's ``S_HEAD`` starts the list), so a window is rebuilt
  from its own trades after a cancel or a correction without scanning the others.
- **slots**: one per (timeframe, symbol, window) with trades; ``slots_i``/``slots_f`` hold its
  identity, state and running aggregates, found by ``by_slot`` (composite key, see
  :func:`slot_key`); free slots on ``free_slots``.
- ``by_key``: trade key -> row, for duplicates, cancels and corrections; ``ctr``: counters and the
  clock (see the ``C_*`` names).

Aggregates are order-free (first/last by (ts, arrival sequence), max, min, sums), so trades may
arrive in any order and a micro-batch needs no sort. No ``fastmath`` (sums keep their order).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.typed import Dict

# What a trade may update (streaming.windows.CONDITION_RULES maps condition codes to these).
LAST = 1  # open and close (a trade that may set the last price may also set high and low)
HIGH_LOW = 2
VOLUME = 4  # volume, VWAP and trade count

# rows_i columns
R_TS, R_SEQ, R_SIZE, R_SYM, R_KEY, R_ALIAS, R_KEY_ID, R_FLAGS, R_ALIVE, R_REFS, N_RI = range(11)
FREE, CANCELLED, ALIVE = -1, 0, 1  # R_ALIVE

# slots_i columns: identity and state, then the integer aggregates
(
    S_KEY,
    S_SYM,
    S_TF,
    S_START,
    S_STATE,
    S_DIRTY,
    S_REBUILD,
    S_HEAD,
    S_EMITTED,
    A_PFIRST_TS,
    A_PFIRST_SEQ,
    A_PLAST_TS,
    A_PLAST_SEQ,
    A_AFIRST_TS,
    A_AFIRST_SEQ,
    A_ALAST_TS,
    A_ALAST_SEQ,
    A_VOLUME,
    A_COUNT,
    A_NP,  # trades that may set the last price
    A_NH,  # trades that may set high/low
    A_NA,  # trades that count for anything
    N_SI,
) = range(23)
UNUSED, OPEN, FINAL = 0, 1, 2  # S_STATE

# slots_f columns: P = trades that may set the last price, H = high/low trades, A = any counted trade
B_PFIRST, B_PLAST, B_HIGH, B_LOW, B_AFIRST, B_ALAST, B_AHIGH, B_ALOW, B_PV, N_SF = range(10)

# ctr entries
(
    C_FREE_ROWS,
    C_FREE_SLOTS,
    C_SEQ,
    C_DUPLICATES,
    C_LATE,
    C_DROPPED,
    C_CORRECTED,
    C_UNMATCHED,
    C_MAX_TS,
    C_BOUNDARY,  # windows ending at or before this instant are final
    C_LATENESS,
    C_HORIZON,
    C_TOUCHED,  # slots on the touched stack
    N_C,
) = range(14)

NO_TIME = np.iinfo(np.int64).min
NEVER = np.iinfo(np.int64).max
SYMBOL_BITS = 22  # symbol codes below 2**22 (4M symbols per stream)


class WindowState(NamedTuple):
    rows_i: np.ndarray  # (row capacity, N_RI) int64
    rows_price: np.ndarray  # (row capacity,) float64
    row_slot: np.ndarray  # (row capacity, timeframes) int64
    row_next: np.ndarray  # (row capacity, timeframes) int64
    free_rows: np.ndarray  # stack of free rows, ctr[C_FREE_ROWS] deep
    slots_i: np.ndarray  # (slot capacity, N_SI) int64
    slots_f: np.ndarray  # (slot capacity, N_SF) float64
    free_slots: np.ndarray
    slot_due: np.ndarray  # per slot, when it next needs the clock: an open window's end, a final one's release
    touched: np.ndarray  # stack of slots changed since the last close_windows, ctr[C_TOUCHED] deep
    widths: np.ndarray  # ns per timeframe
    ctr: np.ndarray  # (N_C,) int64
    by_key: Dict  # trade key (and a corrected trade's new key) -> row
    by_slot: Dict  # slot_key -> slot


def new_state(
    widths_ns: np.ndarray, lateness_ns: int, horizon_ns: int, rows: int = 1024, slots: int = 256
) -> WindowState:
    ctr = np.zeros(N_C, dtype=np.int64)
    ctr[C_MAX_TS] = NO_TIME
    ctr[C_BOUNDARY] = NO_TIME
    ctr[C_LATENESS] = lateness_ns
    ctr[C_HORIZON] = horizon_ns
    n_tf = len(widths_ns)
    state = WindowState(
        rows_i=np.zeros((0, N_RI), dtype=np.int64),
        rows_price=np.zeros(0),
        row_slot=np.zeros((0, n_tf), dtype=np.int64),
        row_next=np.zeros((0, n_tf), dtype=np.int64),
        free_rows=np.zeros(0, dtype=np.int64),
        slots_i=np.zeros((0, N_SI), dtype=np.int64),
        slots_f=np.zeros((0, N_SF)),
        free_slots=np.zeros(0, dtype=np.int64),
        slot_due=np.zeros(0, dtype=np.int64),
        touched=np.zeros(0, dtype=np.int64),
        widths=np.asarray(widths_ns, dtype=np.int64),
        ctr=ctr,
        by_key=Dict.empty(types.int64, types.int64),
        by_slot=Dict.empty(types.int64, types.int64),
    )
    return reserve(state, rows, slots)


def reserve(state: WindowState, rows: int, slots: int) -> WindowState:
    """The state with room for ``rows`` more trades and ``slots`` more windows (arrays at least
    doubled when they grow, so growth costs O(1) per trade)."""
    ctr = state.ctr
    if ctr[C_FREE_ROWS] < rows:
        cap = len(state.rows_price)
        new = max(2 * cap, cap + rows - int(ctr[C_FREE_ROWS]), 1024)
        rows_i = np.zeros((new, N_RI), dtype=np.int64)
        rows_i[:cap] = state.rows_i
        rows_i[cap:, R_ALIVE] = FREE
        rows_price = np.zeros(new)
        rows_price[:cap] = state.rows_price
        row_slot = np.full((new, state.row_slot.shape[1]), -1, dtype=np.int64)
        row_slot[:cap] = state.row_slot
        row_next = np.full((new, state.row_next.shape[1]), -1, dtype=np.int64)
        row_next[:cap] = state.row_next
        free = np.zeros(new, dtype=np.int64)
        depth = int(ctr[C_FREE_ROWS])
        free[:depth] = state.free_rows[:depth]
        free[depth : depth + new - cap] = np.arange(new - 1, cap - 1, -1)
        ctr[C_FREE_ROWS] = depth + new - cap
        state = state._replace(
            rows_i=rows_i, rows_price=rows_price, row_slot=row_slot, row_next=row_next, free_rows=free
        )
    if ctr[C_FREE_SLOTS] < slots:
        cap = len(state.slots_f)
        new = max(2 * cap, cap + slots - int(ctr[C_FREE_SLOTS]), 256)
        slots_i = np.zeros((new, N_SI), dtype=np.int64)
        slots_i[:cap] = state.slots_i
        slots_f = np.zeros((new, N_SF))
        slots_f[:cap] = state.slots_f
        free = np.zeros(new, dtype=np.int64)
        depth = int(ctr[C_FREE_SLOTS])
        free[:depth] = state.free_slots[:depth]
        free[depth : depth + new - cap] = np.arange(new - 1, cap - 1, -1)
        ctr[C_FREE_SLOTS] = depth + new - cap
        slot_due = np.full(new, NEVER, dtype=np.int64)
        slot_due[:cap] = state.slot_due
        touched = np.zeros(new, dtype=np.int64)
        touched[: ctr[C_TOUCHED]] = state.touched[: ctr[C_TOUCHED]]
        state = state._replace(slots_i=slots_i, slots_f=slots_f, free_slots=free, slot_due=slot_due, touched=touched)
    return state


# ---------------------------------------------------------------------------------------------
# Keys


@njit(cache=True, inline="always")
def _mix(x):  # splitmix64's finalizer on int64 (wrapping arithmetic)
    z = np.uint64(x)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.int64(z ^ (z >> np.uint64(31)))


@njit(cache=True, error_model="numpy")
def trade_keys(id_hash, has_id, sym, exchange):
    """(key, id key) per trade: (symbol, trade id, exchange) and (symbol, trade id) as 64-bit
    hashes; 0 for a trade without an id (never deduplicated, never matched by a cancel)."""
    n = id_hash.size
    key = np.zeros(n, dtype=np.int64)
    key_id = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if has_id[i]:
            base = _mix(id_hash[i] ^ _mix(sym[i] + 1))
            key_id[i] = base | 1
            key[i] = _mix(base ^ _mix(exchange[i] + 0x5BD1E995)) | 1
    return key, key_id


@njit(cache=True, inline="always")
def _lookup(d, key):
    if key in d:
        return d[key]
    return np.int64(-1)


@njit(cache=True, inline="always")
def slot_key(start_index, tf, n_tf, sym):
    return ((start_index * n_tf + tf) << SYMBOL_BITS) + sym


# ---------------------------------------------------------------------------------------------
# Aggregates


@njit(cache=True, inline="always")
def _before(ts_a, seq_a, ts_b, seq_b):
    return ts_a < ts_b or (ts_a == ts_b and seq_a < seq_b)


@njit(cache=True, error_model="numpy")
def _accumulate(si, sf, slot, ts, seq, price, size, flags):
    if flags == 0:
        return
    si[slot, A_NA] += 1
    if si[slot, A_NA] == 1:
        si[slot, A_AFIRST_TS], si[slot, A_AFIRST_SEQ], sf[slot, B_AFIRST] = ts, seq, price
        si[slot, A_ALAST_TS], si[slot, A_ALAST_SEQ], sf[slot, B_ALAST] = ts, seq, price
        sf[slot, B_AHIGH], sf[slot, B_ALOW] = price, price
    else:
        if _before(ts, seq, si[slot, A_AFIRST_TS], si[slot, A_AFIRST_SEQ]):
            si[slot, A_AFIRST_TS], si[slot, A_AFIRST_SEQ], sf[slot, B_AFIRST] = ts, seq, price
        if _before(si[slot, A_ALAST_TS], si[slot, A_ALAST_SEQ], ts, seq):
            si[slot, A_ALAST_TS], si[slot, A_ALAST_SEQ], sf[slot, B_ALAST] = ts, seq, price
        sf[slot, B_AHIGH] = max(sf[slot, B_AHIGH], price)
        sf[slot, B_ALOW] = min(sf[slot, B_ALOW], price)
    if flags & VOLUME:
        si[slot, A_VOLUME] += size
        si[slot, A_COUNT] += 1
        sf[slot, B_PV] += price * size
    if flags & (HIGH_LOW | LAST):
        si[slot, A_NH] += 1
        if si[slot, A_NH] == 1:
            sf[slot, B_HIGH], sf[slot, B_LOW] = price, price
        else:
            sf[slot, B_HIGH] = max(sf[slot, B_HIGH], price)
            sf[slot, B_LOW] = min(sf[slot, B_LOW], price)
    if flags & LAST:
        si[slot, A_NP] += 1
        if si[slot, A_NP] == 1:
            si[slot, A_PFIRST_TS], si[slot, A_PFIRST_SEQ], sf[slot, B_PFIRST] = ts, seq, price
            si[slot, A_PLAST_TS], si[slot, A_PLAST_SEQ], sf[slot, B_PLAST] = ts, seq, price
        else:
            if _before(ts, seq, si[slot, A_PFIRST_TS], si[slot, A_PFIRST_SEQ]):
                si[slot, A_PFIRST_TS], si[slot, A_PFIRST_SEQ], sf[slot, B_PFIRST] = ts, seq, price
            if _before(si[slot, A_PLAST_TS], si[slot, A_PLAST_SEQ], ts, seq):
                si[slot, A_PLAST_TS], si[slot, A_PLAST_SEQ], sf[slot, B_PLAST] = ts, seq, price


@njit(cache=True, inline="always")
def _mark_dirty(st, slot):
    if st.slots_i[slot, S_DIRTY] == 0:
        st.slots_i[slot, S_DIRTY] = 1
        st.touched[st.ctr[C_TOUCHED]] = slot
        st.ctr[C_TOUCHED] += 1


@njit(cache=True, error_model="numpy")
def _rebuild(st, slot):
    si, sf, ri = st.slots_i, st.slots_f, st.rows_i
    for c in range(A_PFIRST_TS, N_SI):
        si[slot, c] = 0
    sf[slot, :] = 0.0
    tf = si[slot, S_TF]
    row = si[slot, S_HEAD]
    while row >= 0:
        if ri[row, R_ALIVE] == ALIVE:
            _accumulate(
                si, sf, slot, ri[row, R_TS], ri[row, R_SEQ], st.rows_price[row], ri[row, R_SIZE], ri[row, R_FLAGS]
            )
        row = st.row_next[row, tf]
    si[slot, S_REBUILD] = 0


# ---------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True, error_model="numpy")
def add_trades(st, ts, price, size, sym, key, key_id, flags):
    """Add a batch of trades: duplicates (a key already retained) and trades whose every window
    is past the correction horizon are counted and skipped; the rest join their windows."""
    ri, si, sf, ctr = st.rows_i, st.slots_i, st.slots_f, st.ctr
    widths = st.widths
    n_tf = widths.size
    boundary = ctr[C_BOUNDARY]
    horizon = ctr[C_HORIZON]
    starts = np.empty(n_tf, dtype=np.int64)
    keep = np.empty(n_tf, dtype=np.bool_)
    for i in range(ts.size):
        k = key[i]
        if k != 0 and k in st.by_key:
            ctr[C_DUPLICATES] += 1
            continue
        t = ts[i]
        late = False
        kept = False
        for tf in range(n_tf):
            start = (t // widths[tf]) * widths[tf]
            end = start + widths[tf]
            starts[tf] = start
            keep[tf] = True
            if boundary != NO_TIME and end <= boundary:
                late = True
                if end + horizon <= boundary:
                    keep[tf] = False
            kept = kept or keep[tf]
        if late:
            ctr[C_LATE] += 1
        if t > ctr[C_MAX_TS]:
            ctr[C_MAX_TS] = t
        if not kept:
            ctr[C_DROPPED] += 1
            continue
        ctr[C_FREE_ROWS] -= 1
        row = st.free_rows[ctr[C_FREE_ROWS]]
        seq = ctr[C_SEQ]
        ctr[C_SEQ] += 1
        ri[row, R_TS] = t
        ri[row, R_SEQ] = seq
        ri[row, R_SIZE] = size[i]
        ri[row, R_SYM] = sym[i]
        ri[row, R_KEY] = k
        ri[row, R_ALIAS] = 0
        ri[row, R_KEY_ID] = key_id[i]
        ri[row, R_FLAGS] = flags[i]
        ri[row, R_ALIVE] = ALIVE
        ri[row, R_REFS] = 0
        st.rows_price[row] = price[i]
        if k != 0:
            st.by_key[k] = row
        for tf in range(n_tf):
            if not keep[tf]:
                st.row_slot[row, tf] = -1
                st.row_next[row, tf] = -1
                continue
            skey = slot_key(starts[tf] // widths[tf], tf, n_tf, sym[i])
            slot = _lookup(st.by_slot, skey)
            if slot < 0:
                ctr[C_FREE_SLOTS] -= 1
                slot = st.free_slots[ctr[C_FREE_SLOTS]]
                si[slot, :] = 0
                sf[slot, :] = 0.0
                si[slot, S_KEY] = skey
                si[slot, S_SYM] = sym[i]
                si[slot, S_TF] = tf
                si[slot, S_START] = starts[tf]
                end = starts[tf] + widths[tf]
                if boundary != NO_TIME and end <= boundary:
                    si[slot, S_STATE] = FINAL
                    st.slot_due[slot] = end + horizon
                else:
                    si[slot, S_STATE] = OPEN
                    st.slot_due[slot] = end
                si[slot, S_HEAD] = -1
                st.by_slot[skey] = slot
            st.row_slot[row, tf] = slot
            st.row_next[row, tf] = si[slot, S_HEAD]
            si[slot, S_HEAD] = row
            ri[row, R_REFS] += 1
            _mark_dirty(st, slot)
            if si[slot, S_REBUILD] == 0:
                _accumulate(si, sf, slot, t, seq, price[i], size[i], flags[i])


@njit(cache=True, error_model="numpy")
def _find(st, key, key_id, by_id):
    """The retained live row of a trade, -1 if none (or, matched by id alone, if ambiguous)."""
    ri = st.rows_i
    if not by_id:
        row = _lookup(st.by_key, key)
        return row if row >= 0 and ri[row, R_ALIVE] == ALIVE else -1
    found = -1
    for row in range(ri.shape[0]):
        if ri[row, R_ALIVE] == ALIVE and ri[row, R_KEY_ID] == key_id:
            if found >= 0:
                return -1
            found = row
    return found


@njit(cache=True, error_model="numpy")
def _touch(st, row):
    for tf in range(st.widths.size):
        slot = st.row_slot[row, tf]
        if slot >= 0:
            st.slots_i[slot, S_REBUILD] = 1
            _mark_dirty(st, slot)


@njit(cache=True, error_model="numpy")
def cancel_trades(st, key, key_id, by_id):
    """Cancel retained trades (their windows are rebuilt at the next close); a cancel that finds
    no retained live trade is counted as unmatched. A cancelled trade keeps its key, so a replay
    of it is still a duplicate."""
    for i in range(key.size):
        row = _find(st, key[i], key_id[i], by_id[i])
        if row < 0:
            st.ctr[C_UNMATCHED] += 1
            continue
        st.rows_i[row, R_ALIVE] = CANCELLED
        _touch(st, row)


@njit(cache=True, error_model="numpy")
def correct_trades(st, key, key_id, by_id, price, size, flags, new_key, new_key_id):
    """Replace retained trades' price, size and conditions; a corrected trade that carries a new
    id is also known by it from now on (a replay of either version is a duplicate). When a trade
    with the new id is already retained (hybrid mode's REST catch-up delivered the corrected
    version first), the corrected print is that trade twice: it is voided and counted a duplicate."""
    ri = st.rows_i
    for i in range(key.size):
        row = _find(st, key[i], key_id[i], by_id[i])
        if row < 0:
            st.ctr[C_UNMATCHED] += 1
            continue
        twin = _lookup(st.by_key, new_key[i]) if new_key[i] != 0 else np.int64(-1)
        if twin >= 0 and twin != row:
            ri[row, R_ALIVE] = CANCELLED
            st.ctr[C_DUPLICATES] += 1
            _touch(st, row)
            continue
        st.rows_price[row] = price[i]
        ri[row, R_SIZE] = size[i]
        ri[row, R_FLAGS] = flags[i]
        if new_key[i] != 0 and new_key[i] != ri[row, R_KEY]:
            old_alias = ri[row, R_ALIAS]
            if old_alias != 0 and _lookup(st.by_key, old_alias) == row:
                del st.by_key[old_alias]
            ri[row, R_ALIAS] = new_key[i]
            ri[row, R_KEY_ID] = new_key_id[i]
            st.by_key[new_key[i]] = row
        _touch(st, row)


@njit(cache=True, error_model="numpy")
def _release(st, slot):
    si, ri, ctr = st.slots_i, st.rows_i, st.ctr
    tf = si[slot, S_TF]
    row = si[slot, S_HEAD]
    while row >= 0:
        nxt = st.row_next[row, tf]
        st.row_slot[row, tf] = -1
        st.row_next[row, tf] = -1
        ri[row, R_REFS] -= 1
        if ri[row, R_REFS] == 0:
            for c in (R_KEY, R_ALIAS):
                k = ri[row, c]
                if k != 0 and _lookup(st.by_key, k) == row:
                    del st.by_key[k]
            ri[row, R_ALIVE] = FREE
            st.free_rows[ctr[C_FREE_ROWS]] = row
            ctr[C_FREE_ROWS] += 1
        row = nxt
    del st.by_slot[si[slot, S_KEY]]
    si[slot, S_STATE] = UNUSED
    st.slot_due[slot] = NEVER
    st.free_slots[ctr[C_FREE_SLOTS]] = slot
    ctr[C_FREE_SLOTS] += 1


@njit(cache=True, error_model="numpy")
def _emit(st, slot, lists, counts, final):
    """File a changed or closing slot under final (0), provisional (1) or removed (2)."""
    si = st.slots_i
    if si[slot, S_REBUILD]:
        _rebuild(st, slot)
    if si[slot, A_NA] > 0:
        which = 0 if final else 1
        si[slot, S_EMITTED] = 1
    elif si[slot, S_EMITTED]:
        which = 2
        si[slot, S_EMITTED] = 0
    else:
        which = -1
    if which >= 0:
        lists[which, counts[which]] = slot
        counts[which] += 1
    si[slot, S_DIRTY] = 0
    return which


@njit(cache=True, error_model="numpy")
def close_windows(st, boundary, provisional):
    """Move the final boundary to ``boundary`` (never back) and sort the windows' news into
    (final, provisional, removed) slot lists: windows that closed or changed since they closed,
    open windows that changed, windows whose last counted trade was cancelled. Windows past the
    correction horizon are then released with their trades. Only the touched slots and a scan of
    the contiguous ``slot_due`` are visited. With ``provisional`` false, changed open windows are
    not listed and stay on the touched stack for a later call. Read the returned slots'
    aggregates before the next kernel call: a released slot is reused."""
    si, ctr = st.slots_i, st.ctr
    if boundary > ctr[C_BOUNDARY]:
        ctr[C_BOUNDARY] = boundary
    boundary = ctr[C_BOUNDARY]
    horizon = ctr[C_HORIZON]
    n = si.shape[0]
    lists = np.empty((3, n), dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)
    # Changed slots; an open one that closes now is left to the scan below.
    kept = 0
    for i in range(ctr[C_TOUCHED]):
        slot = st.touched[i]
        if si[slot, S_STATE] == UNUSED or si[slot, S_DIRTY] == 0:
            continue
        if si[slot, S_STATE] == OPEN and st.slot_due[slot] <= boundary:
            continue
        if si[slot, S_STATE] == OPEN and not provisional:
            st.touched[kept] = slot
            kept += 1
            continue
        if _emit(st, slot, lists, counts, si[slot, S_STATE] == FINAL) == 0:
            ctr[C_CORRECTED] += 1
    ctr[C_TOUCHED] = kept
    # Slots the clock reached: open ones close (final), final ones are released.
    release = np.empty(n, dtype=np.int64)
    n_release = 0
    due = st.slot_due
    for slot in range(n):
        if due[slot] > boundary:
            continue
        if si[slot, S_STATE] == OPEN:
            _emit(st, slot, lists, counts, True)
            si[slot, S_STATE] = FINAL
            due[slot] = si[slot, S_START] + st.widths[si[slot, S_TF]] + horizon
            if due[slot] > boundary:
                continue
        release[n_release] = slot
        n_release += 1
    # Release after the lists are complete, so that no listed slot is reused by this call.
    for i in range(n_release):
        _release(st, release[i])
    return lists[0, : counts[0]].copy(), lists[1, : counts[1]].copy(), lists[2, : counts[2]].copy()
