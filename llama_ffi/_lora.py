"""``LoraAdapter``: a LoRA adapter (GGUF) loaded for one model, applied to contexts by scale."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_ffi._errors import ModelLoadError, check_pointer
from llama_ffi._ffi import ffi, lib
from llama_ffi._handle import OwnedHandle
from llama_ffi._model import _read_string

if TYPE_CHECKING:
    from llama_ffi._context import Context
    from llama_ffi._model import Model

__all__ = ["LoraAdapter"]


class LoraAdapter(OwnedHandle):
    """A LoRA adapter file made for ``model`` (same architecture and shapes).

    Apply it with ``Context.set_loras({adapter: scale})``.  Closing the adapter takes it off
    every context it is set on; closing the model closes the adapter first.
    """

    _kind = "LoRA adapter"

    def __init__(self, model: Model, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"LoRA adapter {self.path} does not exist or is not a file")
        model_ptr = model._require()
        ptr = check_pointer(
            lib.llama_adapter_lora_init(model_ptr, os.fsencode(self.path)), ModelLoadError,
            f"failed to load LoRA adapter {self.path} for {model.path.name} "
            "(see the llama_ffi.native log: wrong base model or not a LoRA GGUF?)")
        # libllama frees a model's adapters with the model: this one must go first, so its
        # destructor holds the model's handle
        self._ptr: Any = ffi.gc(ptr, lambda p, _model=model_ptr: lib.llama_adapter_lora_free(p))
        self.model = model
        self._users: weakref.WeakSet[Context] = weakref.WeakSet()
        model._add_dependent(self)

    def _used_by(self, ctx: Context) -> None:
        self._users.add(ctx)

    def metadata(self) -> dict[str, str]:
        """The adapter's GGUF metadata (scalar values, as strings)."""
        ptr = self._require()
        out: dict[str, str] = {}
        for i in range(lib.llama_adapter_meta_count(ptr)):
            key = _read_string(lambda buf, n, i=i: lib.llama_adapter_meta_key_by_index(ptr, i, buf, n))
            value = _read_string(lambda buf, n, i=i: lib.llama_adapter_meta_val_str_by_index(ptr, i, buf, n))
            if key is not None and value is not None:
                out[key] = value
        return out

    @property
    def alora_invocation_tokens(self) -> list[int]:
        """For an activated LoRA (aLoRA): the tokens that switch it on; empty otherwise."""
        ptr = self._require()
        n = lib.llama_adapter_get_alora_n_invocation_tokens(ptr)
        tokens = lib.llama_adapter_get_alora_invocation_tokens(ptr)
        return [tokens[i] for i in range(n)] if n and tokens != ffi.NULL else []

    def close(self) -> None:
        if self._ptr is None:
            return
        for ctx in list(self._users):
            ctx._forget_lora(self)
        ptr, self._ptr = self._ptr, None
        ffi.release(ptr)

    def __repr__(self) -> str:
        return f"<LoraAdapter {self.path.name}{' closed' if self._ptr is None else ''}>"
