"""Whether the market trades on a given day: the gate of the intraday deployment.

A cron schedule knows weekdays, not NYSE holidays; the intraday flow asks :func:`closed_reason`
first and ends as a "Skipped" Completed run on a closed day instead of fetching nothing for an
hour. Pure: a date in, a reason (or None) out, from the NYSE calendar.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from tasks.processing.calendar import nyse_sessions

NEW_YORK = ZoneInfo("America/New_York")


def session_date(now: datetime) -> date:
    """The New York date of an instant (a naive instant is read as UTC)."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(NEW_YORK).date()


def closed_reason(day: date) -> str | None:
    """Why NYSE has no session on ``day`` ("weekend", "NYSE holiday"), or None when it trades
    (half days trade)."""
    if day.weekday() >= 5:
        return f"weekend ({day:%A} {day.isoformat()})"
    if len(nyse_sessions(day, day)) == 0:
        return f"NYSE holiday ({day:%A} {day.isoformat()})"
    return None
