"""Processing of bars between the sources and the hot store: standardize, validate, score.

Pure functions of frames (no database, network or Prefect), so flows wrap them in thin tasks and
tests call them directly. See :mod:`tasks.processing.calendar` for the timestamp conventions.
"""

from tasks.processing.calendar import SessionSchedule, expected_timestamps, nyse_sessions
from tasks.processing.quality import QualityReport, quality_report
from tasks.processing.standardize import standardize_bars
from tasks.processing.validate import FLAGS, REASON, Rule, ValidationResult, validate_bars

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
