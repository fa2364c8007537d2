"""Logging set-up for the command-line server (library users configure logging themselves)."""

from __future__ import annotations

import json
import logging
import sys
import time

from .settings import ServerSettings


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def level(settings: ServerSettings) -> int:
    """The root level: -v shows everything; -lv N counts as llama-server does (0-1 errors,
    2 warnings, 3 information, 4 and up debug)."""
    if settings.verbose:
        return logging.DEBUG
    if settings.verbosity is None:
        return logging.INFO
    return ((logging.ERROR, logging.ERROR, logging.WARNING, logging.INFO)[settings.verbosity]
            if settings.verbosity < 4 else logging.DEBUG)


def configure_logging(settings: ServerSettings) -> None:
    """Console logging in --log-format, plus --log-file unless --log-disable."""
    formatter: logging.Formatter
    if settings.log_format == "json":
        formatter = _JsonFormatter()
    else:
        fmt = "%(message)s"
        if settings.log_prefix:
            fmt = "%(levelname)s %(name)s: " + fmt
        if settings.log_timestamps:
            fmt = "%(asctime)s " + fmt
        formatter = logging.Formatter(fmt)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file is not None and not settings.log_disable:
        handlers.append(logging.FileHandler(settings.log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level(settings))
    # libllama is chatty at INFO (every tensor while loading); keep it for --verbose.
    logging.getLogger("llama_ffi.native").setLevel(
        logging.DEBUG if settings.verbose else logging.WARNING)
