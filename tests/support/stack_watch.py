"""Which of the session stack's processes stopped, and after which test.

A component that dies in the middle of a session fails every later test that needs it, and its log
goes with the session's temporary state dir. After each test the watch looks at the pid files of
the session's processes (a ``kill(pid, 0)`` each); the first test after which one is gone is noted
with the last lines of its log and of the kernel's log on memory kills, for the session's summary.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stack.daemon import process_alive, tail

# component -> (pid file, log file), relative to the state dir; the postmaster's pid is line 1
COMPONENTS = {
    "postgres": ("postgres/postmaster.pid", "log/postgres.log"),
    "lake": ("run/lake.pid", "log/lake.log"),
    "prefect": ("run/prefect.pid", "log/prefect.log"),
    "sandbox": ("run/sandbox.pid", "log/sandbox.log"),
}


@dataclass
class Stopped:
    component: str
    pid: int
    after_test: str
    log_tail: str
    kernel_tail: str


@dataclass
class StackWatch:
    state_dir: Path
    stopped: list[Stopped] = field(default_factory=list)

    def _pid(self, component: str) -> int | None:
        try:
            return int((self.state_dir / COMPONENTS[component][0]).read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def check(self, after_test: str) -> None:
        """Note each component whose pid file names a process that is gone (the stack removes the
        file when it stops one), once per pid; a restart's new pid is watched anew."""
        noted = {(s.component, s.pid) for s in self.stopped}
        for component, (_, log) in COMPONENTS.items():
            pid = self._pid(component)
            if pid is None:
                continue
            if not process_alive(pid) and (component, pid) not in noted:
                self.stopped.append(Stopped(component, pid, after_test, tail(self.state_dir / log, 30), kernel_tail()))

    def report(self) -> list[str]:
        lines = []
        for s in self.stopped:
            lines.append(f"the stack's {s.component} (pid {s.pid}) was found stopped after {s.after_test}")
            lines += ["  last lines of its log:", *("    " + line for line in s.log_tail.splitlines() or ["(empty)"])]
            if s.kernel_tail:
                lines += ["  the kernel's log on killed processes:", *("    " + x for x in s.kernel_tail.splitlines())]
        return lines


def kernel_tail(lines: int = 10) -> str:
    """The kernel log's last lines on processes it killed (out of memory), when it can be read."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    hits = [x for x in out.splitlines() if "Killed process" in x or "out of memory" in x.lower() or "segfault" in x]
    return "\n".join(hits[-lines:])
