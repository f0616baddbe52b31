"""What a person sees at the console: warnings and the commands' own output there, every log line in a file,
and Ray's, Ray Data's and the workers' chatter only with ``--verbose``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

VERBOSE_ENV = "REID_VERBOSE"
LOG_DIR_ENV = "REID_LOG_DIR"
_handlers: list[logging.Handler] = []
_log_file: Path | None = None


def setup_console(command: str, verbose: bool) -> Path | None:
    """Route logging for one command: the console gets warnings (everything with ``verbose``), the file
    ``$REID_LOG_DIR/<command>-<time>.log`` (default ``runs/logs``) every INFO line. The choice also reaches
    a local Ray started later (``REID_VERBOSE``: workers' output to the console, or only to Ray's log files).
    Returns the log file (None when it cannot be written)."""
    global _log_file
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    root = logging.getLogger()
    for handler in _handlers:
        root.removeHandler(handler)
        handler.close()
    _handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    _handlers.append(console)
    _log_file = None
    try:
        directory = Path(os.environ.get(LOG_DIR_ENV, "runs/logs"))
        directory.mkdir(parents=True, exist_ok=True)
        _log_file = (directory / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log").absolute()
        # a+: the log can be read back from the open file (publish it at the end) even where the directory was
        # replaced meanwhile (Ray re-extracts a job's working directory, the default log directory's parent)
        file = logging.FileHandler(_log_file, mode="a+", encoding="utf-8")
        file.setLevel(logging.DEBUG if verbose else logging.INFO)
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _handlers.append(file)
    except OSError:
        _log_file = None
    for handler in _handlers:
        root.addHandler(handler)
    if not verbose:  # MLflow's own handler prints store migrations at INFO; it reads the level when imported
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        # and the client writes "View run ... at" links to stdout each time a run on a server ends
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    return _log_file


def log_file() -> Path | None:
    """The file this command's full log goes to."""
    return _log_file


def log_text() -> str | None:
    """Everything written to this command's log file so far, read from the open file (None without one)."""
    for handler in _handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream is not None:
            handler.acquire()
            try:
                handler.flush()
                stream = handler.stream
                stream.seek(0)
                text = stream.read()
                stream.seek(0, os.SEEK_END)
                return text
            finally:
                handler.release()
    return None


def verbose() -> bool:
    """Whether the command asked for ``--verbose`` (a library caller without the CLI counts as verbose)."""
    return os.environ.get(VERBOSE_ENV, "1") != "0"
