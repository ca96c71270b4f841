"""Helpers shared by the wire renderers: opaque cursors and vectorized timestamp strings."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import numpy as np


def encode_cursor(state: dict[str, Any]) -> str:
    """Opaque, URL-safe page token; clients must treat it as a black box, as with the vendors."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, Any]:
    """Inverse of `encode_cursor`; ValueError for anything that is not one of our tokens."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid page token {token!r}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"invalid page token {token!r}")
    return state


def rfc3339(t_ns: np.ndarray, unit: str = "s") -> list[str]:
    """UTC RFC 3339 strings with a Z suffix, vectorized (Alpaca's timestamp format)."""
    moments = np.asarray(t_ns, dtype=np.int64).astype("datetime64[ns]").astype(f"datetime64[{unit}]")
    text = np.datetime_as_string(moments, unit=unit)
    return [s + "Z" for s in text.tolist()]


def request_id() -> str:
    return secrets.token_hex(16)
