"""Processing of bars between the sources and the hot store: standardize, validate, score.

Pure functions of frames (no database, network or Prefect), so flows wrap them in thin tasks and
tests call them directly. See :mod:`core.calendar` for the timestamp conventions.
"""

from core.calendar import SessionSchedule, expected_timestamps, nyse_sessions
from quality.score import QualityReport, quality_report
from quality.standardize import standardize_bars
from quality.validate import FLAGS, REASON, Rule, ValidationResult, validate_bars

__all__ = [
    "FLAGS",
    "REASON",
    "QualityReport",
    "Rule",
    "SessionSchedule",
    "ValidationResult",
    "expected_timestamps",
    "nyse_sessions",
    "quality_report",
    "standardize_bars",
    "validate_bars",
]
