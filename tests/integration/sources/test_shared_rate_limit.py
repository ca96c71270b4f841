"""The Prefect-backed rate limit holds across three parallel processes (as across flow runs/hosts)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support.vendors import stats

REPO = Path(__file__).resolve().parents[3]
RPS = 10


def test_three_parallel_runs_stay_within_the_shared_limit(stack, sandbox_url):
    env = {**os.environ, "PREFECT_API_URL": stack.prefect.resolved_api_url}
    worker = "tests.support.rate_limit_worker"
    processes = [
        subprocess.Popen([sys.executable, "-m", worker, sandbox_url, str(RPS), "25"], cwd=REPO, env=env)
        for _ in range(3)
    ]
    assert [p.wait(timeout=240) for p in processes] == [0, 0, 0]
    polygon = stats(sandbox_url)["vendors"]["polygon"]
    assert polygon["total"] == 75
    assert polygon["max_per_second"] <= RPS * 1.1 + 1e-9
