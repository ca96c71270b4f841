"""A vendor's JSON page of flat numeric records read straight into columns.

A bars page (Polygon's aggregates: ``{"ticker": ..., "results": [{"t": ..., "o": ..., ...}, ...]}``)
decoded by orjson becomes one dict and one float or int object per value before
:func:`core.model.numeric_columns` gathers them into arrays again: ~1.3 ms of CPU for 1,950 bars,
the largest single cost of a backfill's client. :func:`records_as_columns` scans the array of
records once, compiled (numba), into one numpy array per field (~0.27 ms), and orjson decodes the
rest of the body. It takes only the shape it can read exactly and returns None for anything else
(a string, a null, a boolean, a nested value, an unknown field, a field some records lack, an
escape in a name, a number that is not exact as below): the caller then decodes the body as usual,
so the slow path stays the one that names defects.

Numbers come out as ``np.asarray`` of the values orjson gives would: a field whose every value is
an integer literal is int64, any other float64. A decimal literal with at most 17 significant
digits and an exponent within 22 of it is converted by one correctly rounded division or
multiplication of two exact doubles (the classic exact case of decimal-to-binary conversion), so
every float is the one Python and orjson read; integers up to 2**53 are exact. Longer literals are
not taken.

Compiled on the first call in a process, cached on disk by numba (``cache=True``) like the feature
kernels; nothing happens at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from numba import njit

_POW10 = np.array([10.0**i for i in range(23)])
_EXACT_INT = 2**53  # integers below it are exact doubles
_MAX_DIGITS = 17

# outcomes of the scan besides a record count
_UNREADABLE = -1
_FIELD_UNKNOWN = -2


@njit(cache=True, nogil=True)
def _skip_space(buf: np.ndarray, i: int) -> int:  # pragma: no cover - compiled
    n = len(buf)
    while i < n and (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@njit(cache=True, nogil=True)
def _scan_records(
    buf: np.ndarray,
    start: int,
    names: np.ndarray,
    name_offsets: np.ndarray,
    values: np.ndarray,
    integers: np.ndarray,
    integral: np.ndarray,
    seen: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Read the JSON array at ``buf[start]`` (``[``) of objects whose members are numbers named in
    ``names``. Fills ``values``/``integers`` (field x record), clears ``integral`` where a value is
    not an integer literal, counts each field's values in ``seen``. Returns (records, position after
    ``]``), or (a negative outcome, position) where the shape is not this one."""
    n = len(buf)
    fields = len(name_offsets) - 1
    capacity = values.shape[1]
    i = _skip_space(buf, start)
    if i >= n or buf[i] != 91:  # [
        return _UNREADABLE, i
    i = _skip_space(buf, i + 1)
    records = 0
    if i < n and buf[i] == 93:  # ]
        return 0, i + 1
    while True:
        if i >= n or buf[i] != 123 or records >= capacity:  # {
            return _UNREADABLE, i
        i = _skip_space(buf, i + 1)
        members = 0
        if i < n and buf[i] == 125:  # } (an empty object)
            i += 1
        else:
            while True:
                if i >= n or buf[i] != 34:  # "
                    return _UNREADABLE, i
                name_start = i + 1
                i = name_start
                while i < n and buf[i] != 34:
                    if buf[i] == 92:  # an escape: not read here
                        return _UNREADABLE, i
                    i += 1
                if i >= n:
                    return _UNREADABLE, i
                name_end = i
                i = _skip_space(buf, i + 1)
                if i >= n or buf[i] != 58:  # :
                    return _UNREADABLE, i
                i = _skip_space(buf, i + 1)
                field = -1
                for f in range(fields):
                    a, b = name_offsets[f], name_offsets[f + 1]
                    if b - a == name_end - name_start:
                        same = True
                        for j in range(b - a):
                            if names[a + j] != buf[name_start + j]:
                                same = False
                                break
                        if same:
                            field = f
                            break
                if field < 0:
                    return _FIELD_UNKNOWN, i
                # a JSON number: -?digits(.digits)?([eE][+-]?digits)?
                negative = False
                if i < n and buf[i] == 45:  # -
                    negative = True
                    i += 1
                if i >= n or buf[i] < 48 or buf[i] > 57:
                    return _UNREADABLE, i
                if buf[i] == 48 and i + 1 < n and 48 <= buf[i + 1] <= 57:  # a leading zero
                    return _UNREADABLE, i
                mantissa = 0
                digits = 0
                exponent = 0
                fraction = False
                while i < n:
                    c = buf[i]
                    if 48 <= c <= 57:
                        if mantissa > 0 or c != 48:
                            digits += 1
                        if digits > _MAX_DIGITS:
                            return _UNREADABLE, i
                        mantissa = mantissa * 10 + (c - 48)
                        if fraction:
                            exponent -= 1
                        i += 1
                    elif c == 46 and not fraction:  # .
                        fraction = True
                        i += 1
                        if i >= n or buf[i] < 48 or buf[i] > 57:
                            return _UNREADABLE, i
                    else:
                        break
                literal_integer = not fraction
                if i < n and (buf[i] == 101 or buf[i] == 69):  # e E
                    literal_integer = False
                    i += 1
                    exponent_negative = False
                    if i < n and (buf[i] == 43 or buf[i] == 45):
                        exponent_negative = buf[i] == 45
                        i += 1
                    written = 0
                    e = 0
                    while i < n and 48 <= buf[i] <= 57:
                        e = e * 10 + (buf[i] - 48)
                        written += 1
                        if written > 3:
                            return _UNREADABLE, i
                        i += 1
                    if written == 0:
                        return _UNREADABLE, i
                    exponent += -e if exponent_negative else e
                if mantissa >= _EXACT_INT or exponent < -22 or exponent > 22:
                    return _UNREADABLE, i
                value = float(mantissa)
                if exponent < 0:
                    value = value / _POW10[-exponent]
                elif exponent > 0:
                    value = value * _POW10[exponent]
                if negative:
                    value = -value
                if seen[field] > records:  # the field twice in one record
                    return _UNREADABLE, i
                values[field, records] = value
                if literal_integer:
                    integers[field, records] = -mantissa if negative else mantissa
                else:
                    integral[field] = False
                seen[field] += 1
                members += 1
                i = _skip_space(buf, i)
                if i < n and buf[i] == 44:  # ,
                    i = _skip_space(buf, i + 1)
                    continue
                if i < n and buf[i] == 125:  # }
                    i += 1
                    break
                return _UNREADABLE, i
        records += 1
        for f in range(fields):  # a field in some records only: not this shape
            if seen[f] != 0 and seen[f] != records:
                return _UNREADABLE, i
        i = _skip_space(buf, i)
        if i < n and buf[i] == 44:  # ,
            i = _skip_space(buf, i + 1)
            continue
        if i < n and buf[i] == 93:  # ]
            return records, i + 1
        return _UNREADABLE, i


def records_as_columns(
    body: bytes, member: str, fields: Sequence[str]
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``body`` (a JSON object) decoded with its array ``member`` of flat numeric records as
    columns: (the object's other members, each field present in every record -> its values). None
    when the body is not of that shape (see the module): decode it the usual way instead.

    The member's name must occur once in the body (a string holding it, or a nested object with a
    member of that name, sends the body to the usual path)."""
    token = orjson.dumps(member) + b":"
    at = body.find(token)
    if at < 0 or body.find(token, at + 1) >= 0:
        return None
    names = [f.encode() for f in fields]
    buf = np.frombuffer(body, dtype=np.uint8)
    capacity = body.count(b"{", at)  # at least the records
    values = np.empty((len(names), capacity), dtype=np.float64)
    integers = np.empty((len(names), capacity), dtype=np.int64)
    integral = np.ones(len(names), dtype=np.bool_)
    seen = np.zeros(len(names), dtype=np.int64)
    records, end = _scan_records(
        buf,
        at + len(token),
        np.frombuffer(b"".join(names), dtype=np.uint8),
        np.cumsum([0, *(len(n) for n in names)]).astype(np.int64),
        values,
        integers,
        integral,
        seen,
    )
    if records < 0:
        return None
    try:
        rest = orjson.loads(body[:at] + token + b"[]" + body[end:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rest, dict) or rest.get(member) != []:
        return None
    del rest[member]
    columns = {
        field: (integers[f, :records].copy() if integral[f] else values[f, :records].copy())
        for f, field in enumerate(fields)
        if seen[f] == records and records > 0
    }
    return rest, columns
