"""The command line refuses bad arguments before doing anything, naming what is wrong."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from asyncheartbeat._cli import EXIT_CODES, EXIT_STATUSES, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--task-id", "t", "--field", "oops", "--", "true"], "'oops' is not key=value"),
        (["run", "--task-id", "t", "--field", "k=\x07", "--", "true"], "does not accept"),
        (
            ["run", "--task-id", "t", "--grace", "-1", "--", "true"],
            "argument --grace: '-1' must be a finite number of seconds 0 or more",
        ),
        (
            ["run", "--task-id", "t", "--interval", "0", "--", "true"],
            "argument --interval: '0' must be a finite number of seconds greater than 0",
        ),
        (["run", "--task-id", "t"], "run needs a command to run"),
        (["worker", "--worker-group", "wg", "--concurrency", "0", "--", "true"], "at least 1"),
        (["worker", "--worker-group", "wg", "--shutdown-grace", "x", "--", "true"], "'x' is not"),
        (
            ["run", "--task-id", "t", "--interval", "5", "--lease-timeout", "1", "--", "true"],
            "--lease-timeout (1 s) must be greater than --interval (5 s)",
        ),
        (["run", "--task-id", "", "--", "true"], "--task-id '' must not be empty"),
        (["run", "--task-id", "t" * 3000, "--", "true"], "more than the 2048 allowed"),
        (["worker", "--worker-group", "", "--", "true"], "--worker-group must not be empty"),
        (
            ["run", "--task-id", "t", "--stall-timeout", "0", "--", "true"],
            "--stall-timeout must be a finite number of seconds greater than 0, not 0.0",
        ),
        (
            ["worker", "--worker-group", "wg", "--stall-timeout", "-5", "--", "true"],
            "--stall-timeout must be a finite number",
        ),
        (["run", "--task-id", "t", "--stall-timeout", "inf", "--", "true"], "--stall-timeout"),
        (
            ["run", "--task-id", "t", "--stall-timeout", "soon", "--", "true"],
            "argument --stall-timeout: 'soon' is not a number of seconds",
        ),
        (["worker", "--worker-group", "wg", "--run-task-command", "--", "true"], "give no CMD"),
        (
            ["worker", "--worker-group", "wg", "--false-exit-status", "0", "--", "true"],
            "'0' is not an exit status",
        ),
    ],
)
def test_bad_arguments_are_usage_errors_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each exits with status 2 and says what is wrong."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version says which asyncheartbeat this is, and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert (
        capsys.readouterr().out
        == f"asyncheartbeat {importlib.metadata.version('asyncheartbeat')}\n"
    )


def test_the_exit_status_tables_of_help_and_docs_agree() -> None:
    """`run --help` and docs/command-line.md list the same exit statuses, from one table."""
    docs = (Path(__file__).parent.parent / "docs" / "command-line.md").read_text()
    section = docs.split("## `run`", 1)[1].split("## ", 1)[0]
    rows = [
        tuple(cell.strip() for cell in line.strip("|").split("|"))
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| exit status", "| ---"))
    ]
    assert rows == list(EXIT_STATUSES)
    for status, meaning in EXIT_STATUSES:
        assert f"  {status:<22} {meaning.replace('`', '')}\n" in EXIT_CODES
