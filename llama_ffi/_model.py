"""``Model``: owns a ``llama_model*`` loaded from a GGUF file."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from llama_ffi._callbacks import load_with_progress
from llama_ffi._devices import Device, default_devices, device_array, find_devices
from llama_ffi._devices import devices as all_devices
from llama_ffi._errors import ModelLoadError, check_pointer
from llama_ffi._ffi import ensure_backend, ffi, lib
from llama_ffi._handle import OwnedHandle
from llama_ffi._vocab import Vocab

SPLIT_MODES = {
    "none": lib.LLAMA_SPLIT_MODE_NONE,
    "layer": lib.LLAMA_SPLIT_MODE_LAYER,
    "row": lib.LLAMA_SPLIT_MODE_ROW,
    "tensor": lib.LLAMA_SPLIT_MODE_TENSOR,
}

POOLING_NAMES = {
    lib.LLAMA_POOLING_TYPE_UNSPECIFIED: "unspecified",
    lib.LLAMA_POOLING_TYPE_NONE: "none",
    lib.LLAMA_POOLING_TYPE_MEAN: "mean",
    lib.LLAMA_POOLING_TYPE_CLS: "cls",
    lib.LLAMA_POOLING_TYPE_LAST: "last",
    lib.LLAMA_POOLING_TYPE_RANK: "rank",
}


class _Closable(Protocol):
    def close(self) -> None: ...


def _load_mode(use_mmap: bool, use_mlock: bool) -> int:
    mmap = use_mmap and lib.llama_supports_mmap()
    if mmap and use_mlock:
        return lib.LLAMA_LOAD_MODE_MMAP_MLOCK
    if mmap:
        return lib.LLAMA_LOAD_MODE_MMAP
    if use_mlock:
        return lib.LLAMA_LOAD_MODE_MLOCK
    return lib.LLAMA_LOAD_MODE_NONE


def _read_string(fill: Callable[[Any, int], int], initial: int = 256) -> str | None:
    """Call a libllama ``(buf, size) -> length`` getter, growing the buffer until the value fits."""
    size = initial
    while True:
        buf = ffi.new("char[]", size)
        n = fill(buf, size)
        if n < 0:
            return None
        if n < size:
            return ffi.string(buf, n).decode("utf-8", "replace")
        size = n + 1


class Model(OwnedHandle):
    """A loaded GGUF model.  Close it (or use ``with``) to free its memory now.

    Closing a model first closes the contexts and sampler chains made from it.
    """

    _kind = "model"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_gpu_layers: int = 0,
        main_gpu: int = 0,
        split_mode: str = "layer",
        tensor_split: Sequence[float] | None = None,
        use_mmap: bool = True,
        use_mlock: bool = False,
        vocab_only: bool = False,
        progress: Callable[[float], bool] | None = None,
        devices: Sequence[Device | str] | None = None,
    ) -> None:
        ensure_backend()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode must be one of {sorted(SPLIT_MODES)}, not {split_mode!r}")

        params = lib.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.main_gpu = main_gpu
        params.split_mode = SPLIT_MODES[split_mode]
        params.load_mode = _load_mode(use_mmap, use_mlock)
        params.vocab_only = vocab_only

        # None: libllama's choice (every GPU), but never RPC devices someone else in the
        # process registered (libllama would take them too, and a dead one hangs the load);
        # a list names them (``[]``: none, the CPU only), in the order layers fill them.
        chosen = None
        if devices is None and any(d.is_rpc for d in all_devices()):
            devices = default_devices()
        if devices is not None:
            names = [d for d in devices if isinstance(d, str)]
            by_name = iter(find_devices(names)) if names else iter(())
            chosen = device_array([next(by_name) if isinstance(d, str) else d for d in devices])
            params.devices = chosen

        split = None
        if tensor_split:
            max_devices = lib.llama_max_devices()
            if len(tensor_split) > max_devices:
                raise ValueError(f"tensor_split has {len(tensor_split)} entries; this build supports {max_devices}")
            split = ffi.new("float[]", max_devices)
            for i, share in enumerate(tensor_split):
                split[i] = share
            params.tensor_split = split

        ptr = load_with_progress(
            lambda: lib.llama_model_load_from_file(os.fsencode(self.path), params),
            lib.llama_model_free, params, progress, self.path)
        check_pointer(ptr, ModelLoadError, f"failed to load model from {self.path} (see the llama_ffi.native log)")

        self._ptr: Any = ffi.gc(ptr, lib.llama_model_free)
        self._dependents: weakref.WeakSet[_Closable] = weakref.WeakSet()
        self._metadata: dict[str, str] | None = None

        # libllama stops reading hyperparameters after the vocabulary for a vocab-only model:
        # they stay 0, and the per-layer ones abort the process, so they are never asked.
        self.vocab_only: bool = bool(vocab_only)
        self.n_ctx_train: int = lib.llama_model_n_ctx_train(ptr)
        self.n_embd: int = lib.llama_model_n_embd(ptr)
        self.n_embd_out: int = lib.llama_model_n_embd_out(ptr)
        self.n_cls_out: int = lib.llama_model_n_cls_out(ptr)  # values per input with "rank" pooling
        self.n_layer: int = lib.llama_model_n_layer(ptr)
        self.n_head: int = lib.llama_model_n_head(ptr) if self.n_layer > 0 and not vocab_only else 0
        self.n_params: int = lib.llama_model_n_params(ptr)
        self.size: int = lib.llama_model_size(ptr)
        self.has_encoder: bool = bool(lib.llama_model_has_encoder(ptr))
        self.has_decoder: bool = bool(lib.llama_model_has_decoder(ptr))
        self.description: str = _read_string(lambda buf, n: lib.llama_model_desc(ptr, buf, n)) or ""
        self.vocab = Vocab(self)

    # ------------------------------------------------------------------ C handle

    def _add_dependent(self, obj: _Closable) -> None:
        self._require()
        self._dependents.add(obj)

    def close(self) -> None:
        """Free the model (and, first, every context and sampler chain built on it)."""
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        ptr, self._ptr = self._ptr, None
        ffi.release(ptr)

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else self.description
        return f"<Model {self.path.name} {state}>"

    # ------------------------------------------------------------------ metadata

    @property
    def metadata(self) -> dict[str, str]:
        """GGUF metadata key/value pairs (scalar values, as strings)."""
        if self._metadata is None:
            ptr = self._require()
            data: dict[str, str] = {}
            for i in range(lib.llama_model_meta_count(ptr)):
                key = _read_string(lambda buf, n: lib.llama_model_meta_key_by_index(ptr, i, buf, n))
                value = _read_string(lambda buf, n: lib.llama_model_meta_val_str_by_index(ptr, i, buf, n))
                if key is not None and value is not None:
                    data[key] = value
            self._metadata = data
        return dict(self._metadata)

    def chat_template(self, name: str | None = None) -> str | None:
        """The model's (named) chat template source, or None when it has none."""
        ptr = self._require()
        text = lib.llama_model_chat_template(ptr, name.encode("utf-8") if name else ffi.NULL)
        return ffi.string(text).decode("utf-8", "replace") if text else None

    @property
    def pooling_type(self) -> str:
        """The pooling the model declares for embeddings ("none" when it declares none)."""
        meta = self.metadata
        arch = meta.get("general.architecture", "")
        raw = meta.get(f"{arch}.pooling_type")
        try:
            return POOLING_NAMES.get(int(raw), "none") if raw is not None else "none"
        except ValueError:
            return "none"

    @property
    def ftype(self) -> str:
        """Quantization of the weights ("unknown" for a vocab-only model: libllama never reads it)."""
        ptr = self._require()
        if self.vocab_only:
            return "unknown"
        return ffi.string(lib.llama_ftype_name(lib.llama_model_ftype(ptr))).decode()
