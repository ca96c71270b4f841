"""Live data: the stream service between the vendors' WebSockets and the hot store (issue 14).

- :mod:`streaming.windows` — trades to bars of ``streaming.window_seconds`` and 1 minute (numba),
  with an allowed lateness, corrections and cancels; final vs provisional bars.
- the service (reader -> parser -> windows -> writer), hybrid mode's REST catch-up, and the
  closed-bar announcements live beside it.

The vendor side of a stream (connection, auth, subscribe, reconnect, parse) lives beside each
source's REST adapter in :mod:`sources` (``sources/stream.py``, ``sources/<vendor>/stream.py``).
Layer: above :mod:`pipeline` (hybrid mode reuses the batch path), below :mod:`tasks` and the flows.
"""
