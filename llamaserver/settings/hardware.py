"""Where the model's weights and cache live: GPUs, memory mapping, NUMA."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from pydantic import field_validator, model_validator

from ._fields import HARDWARE, Finite, Group, LayerCount, option, split_list

__all__ = ["HardwareSettings"]

_opt = partial(option, group=HARDWARE)

LoadMode = Literal["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"]

# --load-mode in terms of the seed's --no-mmap / --mlock (direct I/O: read, do not map).
_LOAD_MODES: dict[str, dict[str, bool]] = {
    "auto": {},
    "none": {"no_mmap": True, "mlock": False},
    "mmap": {"no_mmap": False, "mlock": False},
    "mlock": {"no_mmap": True, "mlock": True},
    "mmap+mlock": {"no_mmap": False, "mlock": True},
    "dio": {"no_mmap": True, "mlock": False},
}


class HardwareSettings(Group):
    n_gpu_layers: LayerCount = _opt(
        "-ngl", "--n-gpu-layers", "--gpu-layers", env="LLAMA_ARG_N_GPU_LAYERS", default=0, ge=-1,
        le=2**31 - 1, metavar="N")
    """Layers to offload to the GPU when the library has a GPU backend (-1, 'all' or 'auto' = all of
    them; nothing is fitted to memory)."""
    split_mode: Literal["none", "layer", "row"] = _opt(
        "-sm", "--split-mode", env="LLAMA_ARG_SPLIT_MODE", default="layer",
        metavar="{none,layer,row}")
    """How to split the model across several GPUs."""
    tensor_split: list[Finite] | None = _opt(
        "-ts", "--tensor-split", env="LLAMA_ARG_TENSOR_SPLIT", default=None, metavar="SPLIT",
        append=False)
    """Share of the model per GPU, comma-separated (e.g. 3,2)."""
    rpc: list[str] | None = _opt(
        "--rpc", env="LLAMA_ARG_RPC", default=None, metavar="SERVERS", append=False)
    """Remote devices: rpc-server addresses, comma-separated (host:port,...); -ngl and -ts place
    layers on them. rpc-server has no authentication: use loopback or a private network (a warning
    names any other address)."""
    device: list[str] | None = _opt(
        "-dev", "--device", env="LLAMA_ARG_DEVICE", default=None, metavar="DEV1,DEV2,..",
        append=False)
    """Devices to offload to, comma-separated, in the order layers fill them ('none': the CPU only;
    --list-devices shows the names, RPC ones after --rpc). Default: the --rpc servers' devices, then
    the local GPUs."""
    main_gpu: int = _opt(
        "-mg", "--main-gpu", env="LLAMA_ARG_MAIN_GPU", default=0, ge=0, le=1024, metavar="i")
    """GPU for small tensors and scratch buffers (split-mode none/row)."""
    no_kv_offload: bool = _opt(
        "-nkvo", "--no-kv-offload", env="LLAMA_ARG_KV_OFFLOAD", negative=("-kvo", "--kv-offload"),
        default=False, invert_env=True)
    """Keep the KV cache in host memory even when layers are offloaded (-kvo/--kv-offload: the
    default, offload it)."""
    mlock: bool = _opt("--mlock", default=False)
    """Lock the model in memory so it is never swapped out."""
    no_mmap: bool = _opt("--no-mmap", default=False)
    """Read the model into memory instead of memory-mapping it."""
    load_mode: LoadMode = _opt(
        "-lm", "--load-mode", env="LLAMA_ARG_LOAD_MODE", default="auto", metavar="MODE")
    """How the model file is loaded: auto, none (read), mmap, mlock (read and lock), mmap+mlock, dio
    (read; direct I/O itself is not used). Sets --no-mmap and --mlock."""
    numa: Literal["distribute", "isolate", "numactl"] | None = _opt(
        "--numa", env="LLAMA_ARG_NUMA", default=None, nargs="?", const="distribute",
        metavar="STRATEGY")
    """NUMA strategy: distribute, isolate or numactl (--numa alone means distribute)."""

    @field_validator("tensor_split", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [float(p) for p in split_list(value, ",/")] or None
        return value

    @field_validator("rpc", "device", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return split_list(value) or None if isinstance(value, (str, list, tuple)) else value

    @field_validator("rpc")
    @classmethod
    def _endpoints(cls, value: list[str] | None) -> list[str] | None:
        for endpoint in value or ():
            host, sep, port = endpoint.rpartition(":")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"an RPC server is host:port, not {endpoint!r}")
        return value

    @field_validator("tensor_split")
    @classmethod
    def _non_negative_split(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(v < 0 for v in value):
            raise ValueError("tensor split values must be finite and non-negative")
        return value

    @model_validator(mode="before")
    @classmethod
    def _load_mode_sets_mmap_and_mlock(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("load_mode"), str):
            data = {**data, **_LOAD_MODES.get(data["load_mode"], {})}
        return data
