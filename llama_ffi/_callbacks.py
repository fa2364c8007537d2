"""Python callables that libllama calls back (model-load progress, decode abort).

Each callable sits in a ``CallbackSlot`` whose cffi handle is the C
``user_data``; the owner keeps the slot alive while C may call it.  An
exception raised by the callable cannot cross the C frames, so it is stored
and re-raised by the owner once the C call has returned.
"""

from __future__ import annotations

from typing import Callable

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
