"""``OwnedHandle``: what every class owning one libllama handle shares."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from llama_ffi._errors import LlamaError


class OwnedHandle:
    """``closed``, ``_require()`` and ``with`` over the handle kept in ``self._ptr``.

    Subclasses set ``_ptr`` (None once freed), free it in ``close()``, and may name the error
    raised on use after close and the word used in its message.
    """

    _closed_error: ClassVar[type[LlamaError]] = LlamaError
    _kind: ClassVar[str] = "object"
    _ptr: Any

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _require(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise self._closed_error(f"the {self._kind} is closed")
        return ptr

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
