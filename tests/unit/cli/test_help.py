"""`marketpipe --help` through the console script, and every group's and command's help in process."""

from __future__ import annotations

import pytest

from tests.support.cli import run_cli

TOP_LEVEL = [
    "up",
    "down",
    "status",
    "run",
    "ingest",
    "backfill",
    "metrics",
    "health",
    "vendors",
    "sandbox",
    "worker",
    "deploy",
    "fundamentals",
]
GROUPS = {
    "db": ["migrate", "status"],
    "dlq": ["list", "replay"],
    "bench": ["ingest", "storage", "features", "stream", "replica", "options", "news"],
    "features": ["export"],
    "lake": ["tier", "ls", "du", "compact", "prune-raw"],
    "news": ["search", "like", "embed", "latest", "story"],
    "options": ["ingest", "chain"],
    "scan": [
        "latest",
        "movers",
        "volume-spikes",
        "gaps",
        "highs-lows",
        "rsi",
        "news-sentiment",
        "iv-rank",
        "unusual-options",
        "earnings",
    ],
    "stream": ["tail"],
}


def listed_commands(help_text: str) -> list[str]:
    """The names in the ``Commands:`` section of a help text, in order."""
    lines = help_text.splitlines()
    section = lines[lines.index("Commands:") + 1 :]
    return [line.split()[0] for line in section if line.startswith("  ") and not line.startswith("   ")]


def test_the_console_script_lists_every_command_and_group(marketpipe_cli) -> None:
    result = marketpipe_cli("--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: marketpipe [OPTIONS] COMMAND [ARGS]...")
    assert listed_commands(result.stdout) == [*TOP_LEVEL, *GROUPS]


@pytest.mark.parametrize(("group", "commands"), GROUPS.items())
def test_each_group_lists_its_commands(group: str, commands: list[str]) -> None:
    result = run_cli(group, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: marketpipe {group} [OPTIONS] COMMAND [ARGS]...")
    assert listed_commands(result.stdout) == commands


@pytest.mark.parametrize(
    "command",
    [[name] for name in TOP_LEVEL] + [[group, name] for group, names in GROUPS.items() for name in names],
    ids=" ".join,
)
def test_each_command_explains_itself(command: list[str]) -> None:
    result = run_cli(*command, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: marketpipe {' '.join(command)} [OPTIONS]")
    assert "--help" in result.stdout and result.stderr == ""


def test_a_group_without_a_command_shows_its_help_on_stderr_and_exits_2() -> None:
    result = run_cli("lake")

    assert result.returncode == 2
    assert listed_commands(result.stderr) == GROUPS["lake"] and result.stdout == ""
