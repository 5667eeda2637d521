"""The command line refuses bad arguments before doing anything, naming what is wrong."""

from __future__ import annotations

import pytest

from asyncheartbeat._cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--task-id", "t", "--field", "oops", "--", "true"], "'oops' is not key=value"),
        (["run", "--task-id", "t", "--field", "k=\x07", "--", "true"], "does not accept"),
        (["run", "--task-id", "t", "--grace", "-1", "--", "true"], "'-1' must be 0 seconds"),
        (["run", "--task-id", "t", "--interval", "0", "--", "true"], "more than 0 seconds"),
        (["run", "--task-id", "t"], "run needs a command to run"),
        (["worker", "--worker-group", "wg", "--concurrency", "0", "--", "true"], "at least 1"),
        (["worker", "--worker-group", "wg", "--shutdown-grace", "x", "--", "true"], "'x' is not"),
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
