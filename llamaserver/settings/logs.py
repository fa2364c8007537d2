"""What the command-line server logs, and where (llamaserver._logging applies it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ._fields import LOG, Group, cli

__all__ = ["LogSettings"]


class LogSettings(Group):
    verbose: bool = Field(
        False, description="Verbose logging, including requests and responses of /completion "
        "(API keys are never logged).",
        json_schema_extra=cli("-v", "--verbose", "--log-verbose", group=LOG))
    verbosity: int | None = Field(
        None, ge=0, le=1000, description="Log threshold as llama-server counts it: 0-1 errors, "
        "2 warnings, 3 information (the default), 4 and up everything.",
        json_schema_extra=cli("-lv", "--verbosity", "--log-verbosity",
                              env="LLAMA_ARG_LOG_VERBOSITY", group=LOG, metavar="N"))
    log_disable: bool = Field(
        False, description="Do not write a log file; log to the console only.",
        json_schema_extra=cli("--log-disable", group=LOG))
    log_format: Literal["json", "text"] = Field(
        "text", description="Format of log records.",
        json_schema_extra=cli("--log-format", group=LOG, metavar="{json,text}"))
    log_jsonl: bool = Field(
        False, description="Log one JSON object per line (the same as --log-format json).",
        json_schema_extra=cli("--log-jsonl", negative=("--no-log-jsonl",),
                              env="LLAMA_ARG_LOG_JSONL", group=LOG))
    log_file: Path | None = Field(
        None, description="Also write the log to this file (unless --log-disable).",
        json_schema_extra=cli("--log-file", env="LLAMA_ARG_LOG_FILE", group=LOG,
                              metavar="FNAME"))
    log_prefix: bool = Field(
        True, description="Start text log lines with the level and the logger's name.",
        json_schema_extra=cli("--log-prefix", negative=("--no-log-prefix",),
                              env="LLAMA_ARG_LOG_PREFIX", group=LOG))
    log_timestamps: bool = Field(
        True, description="Start text log lines with the time.",
        json_schema_extra=cli("--log-timestamps", negative=("--no-log-timestamps",),
                              env="LLAMA_ARG_LOG_TIMESTAMPS", group=LOG))

    @model_validator(mode="after")
    def _jsonl_is_json(self) -> "LogSettings":
        if self.log_jsonl and self.log_format != "json":
            self.log_format = "json"
        return self
