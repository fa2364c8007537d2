"""Run a call in a thread of its own that can be abandoned at a deadline.

Chat templates are rendered this way.  A render that outlives its budget is
stopped from outside: ``PyThreadState_SetAsyncExc`` raises ``Abandoned`` in the
render thread at its next bytecode, and Jinja compiles templates to Python
bytecode, so any loop a template runs is interruptible.  (C-level operations
do not check for it; the sandbox bounds those before they start.)

Why a thread and not a worker process: a process can be killed even inside C
code, but the server that calls ``render`` holds a model, libllama's thread
pools and possibly a GPU context, so forking it is unsafe; spawning a clean
interpreter costs a pool to own and shut down, pickling every request's
messages, and a second copy of Jinja's compiled templates; and an embedding
application would get child processes it did not ask for.  With every C-level
operation bounded before it runs, a thread gives the same guarantee at a cost
of one thread start (~100 us) per render.

The caller never receives the asynchronous exception: it only waits.  The
injection and the thread's own exit are serialized by a lock, so an exception
can only land while the thread is still inside the call, where it is caught.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)
_pythonapi = getattr(ctypes, "pythonapi", None)  # absent on interpreters without the C API


class Abandoned(BaseException):
    """Raised inside an abandoned call's thread; a ``BaseException``, so ``except Exception`` cannot swallow it."""


class _Call(threading.Thread, Generic[T]):
    def __init__(self, fn: Callable[[], T], name: str) -> None:
        super().__init__(name=name, daemon=True)  # a stuck call must not keep the process alive
        self._fn = fn
        self._lock = threading.Lock()
        self._finished = False
        self._interrupted = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            try:
                self.result = self._fn()
            except Abandoned:
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
                self.error = exc
            finally:
                with self._lock:
                    self._finished = True
                    if self._interrupted:
                        _async_raise(self.ident, None)  # withdraw one that has not landed yet
        except Abandoned:
            pass
        finally:
            self._fn = None  # type: ignore[assignment]  # drop the closure (and what it holds) now
            self.done.set()

    def interrupt(self) -> bool:
        """Raise ``Abandoned`` in the thread; False if it had already finished (nothing to interrupt)."""
        with self._lock:
            if self._finished:
                return False
            if not self._interrupted:
                self._interrupted = True
                _async_raise(self.ident, Abandoned)
            return True


def _async_raise(ident: int | None, exc: type[BaseException] | None) -> bool:
    if _pythonapi is None or ident is None:
        return False
    # no argtypes set on the shared pythonapi function: pass ctypes objects explicitly
    count = _pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None)
    return bool(count)


def call_with_deadline(fn: Callable[[], T], timeout: float, *, name: str,
                       on_timeout: Callable[[], None] = lambda: None, grace: float = 0.25) -> T:
    """``fn()`` in a new daemon thread; its result, or its exception re-raised here.

    Past ``timeout`` seconds, ``on_timeout()`` runs (to set flags ``fn`` checks), ``Abandoned``
    is raised in the thread, the caller waits up to ``grace`` seconds for it to unwind, and
    ``TimeoutError`` is raised here.
    """
    call: _Call[T] = _Call(fn, name)
    call.start()
    if not call.done.wait(timeout):
        on_timeout()
        if call.interrupt():
            if not call.done.wait(grace):
                _log.warning("%s: abandoned after %.1f s and still running", name, timeout)
            raise TimeoutError(f"{name} took longer than {timeout:g} s")
        call.done.wait()  # it finished while the deadline passed: only its last lines remain
    if call.error is not None:
        raise call.error
    return call.result  # type: ignore[return-value]
