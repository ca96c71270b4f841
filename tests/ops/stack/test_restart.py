"""`marketpipe down` then `marketpipe up` on a private stack (own state dir and ports): the hot
store and the lake keep their data. The session's stack, which every other test uses, keeps running."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from db.connect import database_connection
from stack.supervisor import Stack
from storage.lake import Lake
from tests.support.stack import stack_environment


@pytest.fixture
def private_stack(marketpipe_cli) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A second stack, started with `marketpipe up`; yields its settings and the environment that
    points the console script at it. Stopped and removed afterwards."""
    state_dir = Path(tempfile.mkdtemp(prefix="marketpipe-restart-stack-", dir="/tmp"))
    state_dir.chmod(0o755)  # the cluster's OS user must traverse it
    env = {**stack_environment(state_dir, bucket="marketpipe-restart-lake"), "MARKETPIPE_SANDBOX__ENABLED": "false"}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
    try:
        up = marketpipe_cli("up", env=env, timeout=300)
        assert up.returncode == 0, up.stderr
        yield settings, env
    finally:
        marketpipe_cli("down", env=env)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_up_after_down_keeps_the_data(private_stack: tuple[Settings, dict[str, str]], marketpipe_cli) -> None:
    settings, env = private_stack
    ts = datetime(2020, 1, 2, tzinfo=UTC)
    with database_connection(settings) as conn:
        conn.execute(
            "INSERT INTO market.bars_daily (symbol, timeframe, ts, open, high, low, close, volume, source) "
            "VALUES ('KEEP.ME', '1day', %s, 1, 2, 0.5, 1.5, 100, 'test') ON CONFLICT DO NOTHING",
            (ts,),
        )
        conn.commit()
    Lake.from_settings(settings.lake).put_bytes("tests/keep.txt", b"still here")

    down = marketpipe_cli("down", env=env)
    assert down.returncode == 0, down.stderr
    assert Stack(settings).status().healthy is False
    up = marketpipe_cli("up", env=env, timeout=300)
    assert up.returncode == 0, up.stderr

    with database_connection(settings) as conn:
        count = conn.execute("SELECT count(*) FROM market.bars WHERE symbol = 'KEEP.ME'").fetchone()[0]
    assert count == 1
    assert Lake.from_settings(settings.lake).get_bytes("tests/keep.txt") == b"still here"
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert load_settings() == settings
