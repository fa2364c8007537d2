"""The only importer of the compiled cffi module (``llama_ffi._llama_cffi``).

Importing this module fails with ``NativeLibraryError`` (an ``ImportError``)
when the extension is missing, cannot load libllama, or was compiled against
a different libllama than the one staged in ``llama_ffi/_native``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from llama_ffi._errors import native_library_missing

NATIVE_DIR = Path(__file__).resolve().parent / "_native"

try:
    from llama_ffi._llama_cffi import ffi, lib
except ImportError as exc:
    native_library_missing(f"cannot import the compiled binding llama_ffi._llama_cffi ({exc})", exc)


# The headers the binding is generated from, and the build-info key of each one's sha256.
BOUND_HEADERS = {"ggml.h": "ggml_h_sha256", "ggml-backend.h": "ggml_backend_h_sha256", "ggml-rpc.h": "ggml_rpc_h_sha256",
                 "llama.h": "llama_h_sha256", "mtmd.h": "mtmd_h_sha256", "mtmd-helper.h": "mtmd_helper_h_sha256"}


def build_info() -> dict[str, str]:
    """What the extension was compiled against: ``upstream_commit`` and each bound header's
    sha256 (``ggml_backend_h_sha256``, ``ggml_rpc_h_sha256``, ``llama_h_sha256``, ...)."""
    return json.loads(ffi.string(lib.llama_ffi_build_info()).decode("utf-8"))


def _check_build_matches_native() -> None:
    info = build_info()
    manifest = NATIVE_DIR / "manifest.json"
    if info.get("upstream_commit") and manifest.is_file():
        try:
            staged = str(json.loads(manifest.read_text(encoding="utf-8")).get("upstream_commit", ""))
        except (OSError, ValueError) as exc:
            native_library_missing(f"{manifest} is unreadable ({exc})", exc)
        if staged and staged != info["upstream_commit"]:
            native_library_missing(
                f"the binding was compiled against llama.cpp {info['upstream_commit']} "
                f"but llama_ffi/_native holds {staged}; rebuild the binding"
            )
    for name, key in BOUND_HEADERS.items():
        header = NATIVE_DIR / "include" / name
        if not info.get(key):
            native_library_missing(f"the binding was compiled without {name}; rebuild the binding")
        if header.is_file() and hashlib.sha256(header.read_bytes()).hexdigest() != info[key]:
            native_library_missing(f"llama_ffi/_native/include/{name} changed since the binding was compiled")


_check_build_matches_native()


class _Backend:
    """Process-wide libllama state: ``llama_backend_init`` and the log route, set up once.

    libllama's backend and logger are global to the process, so this is the
    one process-wide object of the package; it also keeps the log route's
    cffi handle alive for as long as libllama may call it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self.log_route: Any = None
        self.numa: str | None = None
        # ggml's abort hook is one per process: the threads that asked to survive an abort,
        # by thread id: (handler, whether its engine uses remote devices) (see _native_abort.py).
        self.abort_handlers: dict[int, tuple[Any, bool]] = {}
        self.abort_route_installed = False
        self.abandoned: list[Any] = []   # objects libllama stopped inside (abandon_native)

    def ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            from llama_ffi._log import NativeLogRoute

            route = NativeLogRoute()
            route.install()
            self.log_route = route
            lib.llama_backend_init()
            self._ready = True


    def numa_init(self, strategy: str) -> None:
        # ggml keeps one NUMA layout per process and takes the first call's
        with self._lock:
            if self.numa is None:
                lib.llama_numa_init(_NUMA[strategy])
                self.numa = strategy
            elif self.numa != strategy:
                logging.getLogger("llama_ffi").warning(
                    "NUMA strategy %r ignored: this process already uses %r", strategy, self.numa)


_NUMA = {
    "disabled": lib.GGML_NUMA_STRATEGY_DISABLED,
    "distribute": lib.GGML_NUMA_STRATEGY_DISTRIBUTE,
    "isolate": lib.GGML_NUMA_STRATEGY_ISOLATE,
    "numactl": lib.GGML_NUMA_STRATEGY_NUMACTL,
    "mirror": lib.GGML_NUMA_STRATEGY_MIRROR,
}

_BACKEND = _Backend()


def ensure_backend() -> None:
    """Initialise libllama (once per process, thread-safe) and route its log to ``logging``."""
    _BACKEND.ensure()


def numa_init(strategy: str) -> None:
    """Apply a NUMA strategy (distribute, isolate, numactl, mirror) to this process, once."""
    if strategy not in _NUMA:
        raise ValueError(f"unknown NUMA strategy {strategy!r}; one of {sorted(_NUMA)}")
    ensure_backend()
    _BACKEND.numa_init(strategy)


def backend_state() -> _Backend:
    """The process-wide libllama state (for the modules that hook process-wide C state)."""
    return _BACKEND


__all__ = ["ffi", "lib", "build_info", "ensure_backend", "numa_init", "backend_state", "NATIVE_DIR"]
