"""Surviving ggml's aborts: the aborting thread is parked, the process lives.

ggml ends the process (``abort()``) on conditions it cannot report, among them a remote RPC
server that went away mid-computation ("Remote RPC server crashed or returned malformed
response").  A server that places layers on remote devices must not vanish with them: it
should fail the requests in flight and say why on ``/health``.

ggml lets a program see the message first (``ggml_set_abort_callback``) but aborts anyway once
the callback returns, so the callback never returns: the thread waits forever, still inside
ggml.  Who is told:

- an abort on a thread inside ``guard_native_aborts(handler)``: that ``handler``;
- an abort on one of ggml's own threads (the RPC client's connection thread, which does the
  sending for whoever called into ggml): the handler of every guard that said its thread uses
  remote devices (``remote=True``, the default), since any of their threads may now wait
  forever for that connection; a guard whose thread computes only on local devices is not
  told (a server without ``--rpc`` keeps serving).  Once the first guard is installed, such
  aborts no longer end the process.

A handler runs on the aborting thread, which need not be its own.  Everything its owner's
thread was using (a context, a model) is in an unknown state and must be neither used nor
freed again; the owner leaks it on purpose.  Without any guard, ggml's behaviour is kept: the
message is printed and the process aborts.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator

from llama_ffi._errors import NativeAbort
from llama_ffi._ffi import backend_state, ensure_backend, ffi, lib

__all__ = ["NativeAbort", "abandon_native", "guard_native_aborts"]


@contextlib.contextmanager
def guard_native_aborts(handler: Callable[[NativeAbort], None], *,
                        remote: bool = True) -> Iterator[None]:
    """While inside, a ggml abort on this thread (or, when ``remote``, on one of ggml's own
    threads) calls ``handler`` (on the aborting thread) and parks the aborting thread."""
    ensure_backend()
    state = backend_state()
    with state._lock:
        if not state.abort_route_installed:
            lib.ggml_set_abort_callback(lib.llama_ffi_on_ggml_abort)
            state.abort_route_installed = True
    ident = threading.get_ident()
    state.abort_handlers[ident] = (handler, remote)
    try:
        yield
    finally:
        state.abort_handlers.pop(ident, None)


def abandon_native(*objects: object) -> None:
    """Keep ``objects`` (a model, a context, whatever holds them) alive for the rest of the
    process: a thread stopped inside libllama while using them.  Freeing them would call
    into the same dead state (a gone RPC server: another abort, on whichever thread the
    garbage collector ran, perhaps another engine's); so ``ffi.gc``'s safety net must never
    see them unreferenced."""
    state = backend_state()
    with state._lock:
        state.abandoned.extend(o for o in objects if o is not None)


@ffi.def_extern()
def llama_ffi_on_ggml_abort(error_message) -> None:  # type: ignore[no-untyped-def]
    message = ffi.string(error_message).decode("utf-8", "replace").strip()
    handlers = backend_state().abort_handlers
    own = handlers.get(threading.get_ident())
    told = [own[0]] if own is not None else [h for h, remote in handlers.values() if remote]
    if not told:
        # what ggml prints without a callback; nobody else will hear of it
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    if not handlers:
        return  # ggml aborts the process when this returns
    for handler in told:
        try:
            handler(NativeAbort(message))
        except BaseException:  # noqa: BLE001 - nothing may return into ggml: it would abort
            pass
    threading.Event().wait()   # parked for good (returning would end the process)
