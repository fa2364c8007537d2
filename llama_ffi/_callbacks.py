"""Python callables that libllama calls back (model-load progress, decode abort).

Each callable sits in a ``CallbackSlot`` whose cffi handle is the C
``user_data``; the owner keeps the slot alive while C may call it.  An
exception raised by the callable cannot cross the C frames, so it is stored
and re-raised by the owner once the C call has returned.
"""

from __future__ import annotations

from typing import Any, Callable

from llama_ffi._errors import ModelLoadError, reraise_pending
from llama_ffi._ffi import ffi, lib


class CallbackSlot:
    """A Python callable handed to C, with the exception it raised (if any)."""

    __slots__ = ("fn", "errors", "handle", "declined", "__weakref__")

    def __init__(self, fn: Callable[..., bool]) -> None:
        self.fn = fn
        self.errors: list[BaseException] = []
        self.declined = False  # the callable asked C to stop
        self.handle = ffi.new_handle(self)


@ffi.def_extern()
def llama_ffi_on_progress(progress: float, user_data) -> bool:  # type: ignore[no-untyped-def]
    slot: CallbackSlot = ffi.from_handle(user_data)
    try:
        keep_going = slot.fn(progress)
    except BaseException as exc:  # noqa: BLE001 - re-raised by Model after C returns
        slot.errors.append(exc)
        return False
    if keep_going is False:
        slot.declined = True
        return False
    return True


@ffi.def_extern()
def llama_ffi_on_abort(user_data) -> bool:  # type: ignore[no-untyped-def]
    slot: CallbackSlot = ffi.from_handle(user_data)
    try:
        stop = bool(slot.fn())
    except BaseException as exc:  # noqa: BLE001 - re-raised by Context after C returns
        slot.errors.append(exc)
        return True
    if stop:
        slot.declined = True
    return stop


PROGRESS_CALLBACK = lib.llama_ffi_on_progress
ABORT_CALLBACK = lib.llama_ffi_on_abort


def load_with_progress(load: Callable[[], Any], free: Callable[[Any], None], params: Any,
                       progress: Callable[[float], bool] | None, path: object) -> Any:
    """``load()``, a C loader reading ``params`` (a model's or a projector's), with ``progress``
    as its progress callback.

    An exception the callback raised is re-raised, after ``free`` on whatever C returned; a
    callback that declined is a ``ModelLoadError``.  Any other NULL is the caller's to check.
    """
    slot = None
    if progress is not None:
        slot = CallbackSlot(progress)
        params.progress_callback = PROGRESS_CALLBACK
        params.progress_callback_user_data = slot.handle
    ptr = load()
    if slot is not None:
        if slot.errors and ptr:
            free(ptr)
        reraise_pending(slot.errors)
        if slot.declined and not ptr:
            raise ModelLoadError(f"loading {path} was cancelled by the progress callback")
    return ptr
