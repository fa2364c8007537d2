"""libllama's and libmtmd's log, routed to ``logging.getLogger("llama_ffi.native")``."""

from __future__ import annotations

import logging
import threading

from llama_ffi._ffi import ffi, lib

LOGGER_NAME = "llama_ffi.native"

_LEVELS = {
    lib.GGML_LOG_LEVEL_NONE: logging.INFO,
    lib.GGML_LOG_LEVEL_DEBUG: logging.DEBUG,
    lib.GGML_LOG_LEVEL_INFO: logging.INFO,
    lib.GGML_LOG_LEVEL_WARN: logging.WARNING,
    lib.GGML_LOG_LEVEL_ERROR: logging.ERROR,
}


class NativeLogRoute:
    """Assembles libllama's log fragments into lines and hands them to ``logging``.

    libllama writes a line in several calls (``GGML_LOG_LEVEL_CONT`` continues
    the previous one), possibly from several threads, so fragments are joined
    per thread until a newline arrives.
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(LOGGER_NAME)
        self._local = threading.local()
        self._handle = ffi.new_handle(self)

    def install(self) -> None:
        lib.llama_log_set(lib.llama_ffi_on_log, self._handle)
        lib.mtmd_helper_log_set(lib.llama_ffi_on_log, self._handle)  # libmtmd's and its helper's

    def write(self, level: int, text: str) -> None:
        local = self._local
        pending: str = getattr(local, "pending", "")
        if level == lib.GGML_LOG_LEVEL_CONT:
            pending += text
        else:
            if pending:
                self._emit(local.level, pending)
            local.level = _LEVELS.get(level, logging.INFO)
            pending = text
        while "\n" in pending:
            line, pending = pending.split("\n", 1)
            self._emit(local.level, line)
        local.pending = pending

    def _emit(self, level: int, line: str) -> None:
        line = line.rstrip()
        if line and self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", line)


@ffi.def_extern()
def llama_ffi_on_log(level: int, text, user_data) -> None:  # type: ignore[no-untyped-def]
    # libllama logs from anywhere, with no Python caller to hand an error to:
    # a failing log handler must not take the process down, so errors are dropped.
    try:
        route: NativeLogRoute = ffi.from_handle(user_data)
        route.write(level, ffi.string(text).decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001
        pass
