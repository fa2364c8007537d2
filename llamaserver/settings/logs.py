"""What the command-line server logs, and where (llamaserver._logging applies it)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from ._fields import LOG, Group, option

__all__ = ["LogSettings"]

_opt = partial(option, group=LOG)


class LogSettings(Group):
    verbose: bool = _opt("-v", "--verbose", "--log-verbose", default=False)
    """Verbose logging, including requests and responses of /completion (API keys are never
    logged)."""
    verbosity: int | None = _opt(
        "-lv", "--verbosity", "--log-verbosity", env="LLAMA_ARG_LOG_VERBOSITY", default=None, ge=0,
        le=1000, metavar="N")
    """Log threshold as llama-server counts it: 0-1 errors, 2 warnings, 3 information (the default),
    4 and up everything."""
    log_disable: bool = _opt("--log-disable", default=False)
    """Do not write a log file; log to the console only."""
    log_format: Literal["json", "text"] = _opt(
        "--log-format", default="text", metavar="{json,text}")
    """Format of log records."""
    log_jsonl: bool = _opt(
        "--log-jsonl", env="LLAMA_ARG_LOG_JSONL", negative=("--no-log-jsonl",), default=False)
    """Log one JSON object per line (the same as --log-format json)."""
    log_file: Path | None = _opt(
        "--log-file", env="LLAMA_ARG_LOG_FILE", default=None, metavar="FNAME")
    """Also write the log to this file (unless --log-disable)."""
    log_prefix: bool = _opt(
        "--log-prefix", env="LLAMA_ARG_LOG_PREFIX", negative=("--no-log-prefix",), default=True)
    """Start text log lines with the level and the logger's name."""
    log_timestamps: bool = _opt(
        "--log-timestamps", env="LLAMA_ARG_LOG_TIMESTAMPS", negative=("--no-log-timestamps",),
        default=True)
    """Start text log lines with the time."""

    @model_validator(mode="after")
    def _jsonl_is_json(self) -> "LogSettings":
        if self.log_jsonl and self.log_format != "json":
            self.log_format = "json"
        return self
