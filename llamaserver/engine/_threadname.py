"""Give the current thread its Python name at the OS level too (`top -H`, /proc, profilers).

Threads that libllama's compute pool starts from this thread inherit the name, so the
engine's CPU time can be told apart from the event loop's from outside the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

_PR_SET_NAME = 15


def name_os_thread() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_NAME, threading.current_thread().name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
