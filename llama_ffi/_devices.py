"""ggml's devices: what this process can place layers on, and remote ones over RPC.

ggml keeps one registry of backends and devices per process.  Local devices (the CPU, GPUs of
the build's backend) are registered at start-up; ``add_rpc_servers`` adds the devices that
an ``rpc-server`` (upstream's tools/rpc) offers over TCP.  Once added, a remote device stays
registered for the life of the process (ggml has no way to remove one), which is why a model
names its devices explicitly (``Model(devices=...)``) rather than taking all registered ones.

The RPC functions are looked up through ggml's registry (``ggml_backend_reg_get_proc_address``)
instead of being linked: a library built without ``--rpc`` has no RPC backend, and then
``RpcUnavailableError`` says how to get one.

rpc-server has no authentication and trusts every byte it is sent: run it on loopback or a
private network only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llama_ffi._errors import RpcServerError, RpcUnavailableError
from llama_ffi._ffi import NATIVE_DIR, ensure_backend, ffi, lib

__all__ = ["Device", "devices", "find_devices",
           "rpc_supported", "add_rpc_servers", "default_devices", "parse_endpoint",
           "is_loopback_endpoint", "rpc_server_path"]

RPC_FIX = "LLAMA_FFI_RPC=1 python build_native.py && LLAMA_FFI_RPC=1 pip install -e ."

_TYPES = {
    lib.GGML_BACKEND_DEVICE_TYPE_CPU: "cpu",
    lib.GGML_BACKEND_DEVICE_TYPE_GPU: "gpu",
    lib.GGML_BACKEND_DEVICE_TYPE_IGPU: "igpu",
    lib.GGML_BACKEND_DEVICE_TYPE_ACCEL: "accel",
    lib.GGML_BACKEND_DEVICE_TYPE_META: "meta",
}


@dataclasses.dataclass(frozen=True)
class Device:
    """One ggml device.  ``name`` is what ``--device`` takes (``CPU``, ``CUDA0``, ``RPC0``)."""

    name: str
    description: str   # for an RPC device: its server's host:port
    type: str          # "cpu", "gpu", "igpu", "accel"
    backend: str       # the registry's name: "CPU", "CUDA", "RPC", ...
    handle: Any = dataclasses.field(repr=False, compare=False)   # ggml_backend_dev_t

    @property
    def is_rpc(self) -> bool:
        return self.backend == "RPC"

    @property
    def memory_free(self) -> int:
        return self.memory()[0]

    @property
    def memory_total(self) -> int:
        return self.memory()[1]

    def memory(self) -> tuple[int, int]:
        """(free, total) bytes, in one question to the device."""
        # Asked when wanted, not when listed: for an RPC device it is a call to its server,
        # and ggml aborts when that server has gone (still registered in this process): ask
        # only a server that still listens; one that went away has nothing to give.
        if self.is_rpc:
            try:
                _check_listening(self.description, 2.0)
            except (RpcServerError, ValueError):
                return 0, 0
        free = ffi.new("size_t *")
        total = ffi.new("size_t *")
        lib.ggml_backend_dev_memory(self.handle, free, total)
        return free[0], total[0]

    @classmethod
    def _from(cls, dev: Any) -> Device:
        reg = lib.ggml_backend_dev_backend_reg(dev)
        return cls(name=_text(lib.ggml_backend_dev_name(dev)),
                   description=_text(lib.ggml_backend_dev_description(dev)),
                   type=_TYPES.get(lib.ggml_backend_dev_type(dev), "unknown"),
                   backend=_text(lib.ggml_backend_reg_name(reg)) if reg else "",
                   handle=dev)


def _text(ptr: Any) -> str:
    return ffi.string(ptr).decode("utf-8", "replace") if ptr else ""


def devices() -> list[Device]:
    """Every device registered in this process, in ggml's order (RPC ones once added)."""
    ensure_backend()
    return [Device._from(lib.ggml_backend_dev_get(i)) for i in range(lib.ggml_backend_dev_count())]


def find_devices(names: Iterable[str]) -> list[Device]:
    """The devices with these names (``--device``); ``ValueError`` names an unknown one."""
    known = {d.name: d for d in devices()}
    found = []
    for name in names:
        device = known.get(name)
        if device is None or device.type == "cpu":
            # as upstream: the CPU is not a device to offload to (-ngl 0 keeps layers there)
            listed = ", ".join(n for n, d in known.items() if d.type != "cpu") or "none"
            raise ValueError(f"invalid device {name!r} (devices to offload to: {listed})")
        found.append(device)
    return found


def rpc_supported() -> bool:
    """Whether this libllama has ggml's RPC backend (every ``build_native.py`` build has it;
    an older staged library may not)."""
    ensure_backend()
    return bool(lib.llama_supports_rpc())


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ``ValueError`` for anything else."""
    host, sep, port = endpoint.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an RPC server is host:port, not {endpoint!r}")
    return host, int(port)


def is_loopback_endpoint(endpoint: str) -> bool:
    """Whether ``endpoint`` names this machine's loopback (``localhost``, 127.0.0.0/8, ::1)."""
    host, _ = parse_endpoint(endpoint)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False   # a host name: it may resolve anywhere


def _check_listening(endpoint: str, timeout: float) -> None:
    # ggml aborts the whole process when it cannot connect; a refused connection must be an
    # error here, before ggml tries.
    host, port = parse_endpoint(endpoint)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RpcServerError(f"cannot reach the RPC server at {endpoint}: {exc}") from None


def _rpc_function(name: str) -> Any:
    """A function of ggml-rpc.h, looked up in ggml's registry (cast to its bound type)."""
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise RpcUnavailableError("this libllama was built without ggml's RPC backend; "
                                  f"rebuild with RPC: {RPC_FIX}")
    address = lib.ggml_backend_reg_get_proc_address(reg, name.encode())
    if not address:
        raise RpcUnavailableError(f"ggml's RPC backend has no {name}")
    return ffi.cast(f"{name}_t", address)


def _registered(reg: Any) -> bool:
    return any(lib.ggml_backend_reg_get(i) == reg for i in range(lib.ggml_backend_reg_count()))


def add_rpc_servers(endpoints: Sequence[str], *, timeout: float = 5.0) -> list[Device]:
    """Register the devices of these ``rpc-server``s (``host:port`` each) and return them.

    Adding a server twice returns its devices again.  Raises ``RpcUnavailableError`` on a
    build without RPC, ``RpcServerError`` when a server cannot be reached or offers nothing,
    ``ValueError`` for a malformed address.
    """
    ensure_backend()
    if not endpoints:
        raise ValueError("no RPC servers given")
    for endpoint in endpoints:
        parse_endpoint(endpoint)
    add_server = _rpc_function("ggml_backend_rpc_add_server")
    found: list[Device] = []
    for endpoint in endpoints:
        _check_listening(endpoint, timeout)
        reg = add_server(endpoint.strip().encode())
        if not reg:
            raise RpcServerError(f"the RPC server at {endpoint} offers no devices")
        if not _registered(reg):
            lib.ggml_backend_register(reg)
        found += [Device._from(lib.ggml_backend_reg_dev_get(reg, i))
                  for i in range(lib.ggml_backend_reg_dev_count(reg))]
    return found


def default_devices(rpc: Sequence[Device] = ()) -> list[Device]:
    """libllama's own default choice, limited to the given remote devices: those first (as
    libllama puts RPC devices first, to keep transfers down), then the local GPUs (integrated
    ones only when there is no discrete GPU).  RPC devices that another part of the process
    registered are not taken."""
    local = [d for d in devices() if not d.is_rpc]
    gpus = [d for d in local if d.type == "gpu"]
    igpus = [d for d in local if d.type == "igpu"]
    return list(rpc) + (gpus or [d for d in igpus if d.backend == igpus[0].backend])


def device_array(chosen: Sequence[Device]) -> Any:
    """A NULL-terminated ``ggml_backend_dev_t[]`` for ``llama_model_params.devices``."""
    array = ffi.new("ggml_backend_dev_t[]", len(chosen) + 1)
    for i, device in enumerate(chosen):
        array[i] = device.handle
    return array


def rpc_server_path() -> Path:
    """Upstream's ``rpc-server`` staged by ``build_native.py --rpc`` (``bin/ggml-rpc-server``)."""
    path = NATIVE_DIR / "bin" / "ggml-rpc-server"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build with RPC: {RPC_FIX}")
    return path
