"""What the commands say: status lines and the library's log on standard error, and
``worker --log-dir``'s hourly files."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

#: ``worker --log-dir``: the log file, and how many hourly files are kept (a week's).
LOG_FILE = "asyncheartbeat-worker.log"
LOG_BACKUPS = 168


def status(line: str) -> None:
    print(f"asyncheartbeat: {line}", file=sys.stderr, flush=True)


def log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("asyncheartbeat: %(message)s"))
    logger = logging.getLogger("asyncheartbeat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def log_to_files(directory: str) -> None:
    """Log to ``directory``/`LOG_FILE` too, starting a new file every hour, as the Java Task
    Runner's ``--output`` does."""
    os.makedirs(directory, exist_ok=True)
    handler = logging.handlers.TimedRotatingFileHandler(
        os.path.join(directory, LOG_FILE), when="h", backupCount=LOG_BACKUPS, utc=True
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("asyncheartbeat").addHandler(handler)
