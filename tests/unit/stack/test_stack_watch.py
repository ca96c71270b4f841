"""The test session's watch on its stack's processes (tests/support/stack_watch.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.stack_watch import StackWatch


def test_a_process_that_stops_is_named_with_the_test_and_its_log(tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "sandbox.log").write_text("started\nTraceback: the last words\n")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run" / "sandbox.pid").write_text(f"{child.pid}\n")
        watch = StackWatch(tmp_path)
        watch.check("tests/a.py::test_one")
        assert watch.stopped == []
        child.kill()
        child.wait(10)
        watch.check("tests/a.py::test_two")
        watch.check("tests/a.py::test_three")  # named once, after the test it stopped in
    finally:
        child.kill()
    (stopped,) = watch.stopped
    assert (stopped.component, stopped.pid, stopped.after_test) == ("sandbox", child.pid, "tests/a.py::test_two")
    report = "\n".join(watch.report())
    assert f"sandbox (pid {child.pid}) was found stopped after tests/a.py::test_two" in report
    assert "Traceback: the last words" in report


def test_components_never_started_are_not_reported(tmp_path) -> None:
    watch = StackWatch(tmp_path)
    watch.check("tests/a.py::test_one")
    assert watch.stopped == [] and watch.report() == []


def test_a_process_dead_before_the_first_check_is_named_too(tmp_path) -> None:
    (tmp_path / "run").mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    (tmp_path / "run" / "lake.pid").write_text(f"{child.pid}\n")  # started, then gone at once
    watch = StackWatch(tmp_path)
    watch.check("tests/a.py::test_one")
    watch.check("tests/a.py::test_two")
    assert [(s.component, s.after_test) for s in watch.stopped] == [("lake", "tests/a.py::test_one")]
    assert "(empty)" in "\n".join(watch.report())  # no log file
