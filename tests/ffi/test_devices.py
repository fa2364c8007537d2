"""ggml's device registry through the binding: listing, naming, and RPC without a server.

The remote side (two rpc-servers, a model split over them) is tests/server/test_rpc.py.
"""

from __future__ import annotations

import pytest

import llama_ffi


def test_the_cpu_is_listed_and_is_no_device_to_offload_to() -> None:
    found = llama_ffi.devices()
    cpu = [d for d in found if d.type == "cpu"]
    assert cpu and cpu[0].backend == "CPU" and cpu[0].memory_total > 0
    with pytest.raises(ValueError, match="invalid device 'CPU'"):
        llama_ffi.find_devices(["CPU"])
    with pytest.raises(ValueError, match="invalid device 'NOPE0'"):
        llama_ffi.find_devices(["NOPE0"])


def test_a_model_on_no_device_is_a_cpu_model(model_path) -> None:
    with llama_ffi.Model(model_path, devices=[], n_gpu_layers=-1, vocab_only=True) as model:
        assert model.vocab.n_tokens > 0


def test_endpoints_are_host_port() -> None:
    assert llama_ffi.is_loopback_endpoint("127.0.0.2:1") and llama_ffi.is_loopback_endpoint("[::1]:9")
    assert llama_ffi.is_loopback_endpoint("localhost:50052")
    assert not llama_ffi.is_loopback_endpoint("192.168.1.4:50052")
    assert not llama_ffi.is_loopback_endpoint("gpu-box:50052")   # a name may resolve anywhere
    for bad in ("nohost", "host:", ":80", "host:99999"):
        with pytest.raises(ValueError, match="host:port"):
            llama_ffi.add_rpc_servers([bad])


@pytest.mark.skipif(llama_ffi.rpc_supported(), reason="this build has the RPC backend")
def test_without_the_rpc_backend_adding_a_server_says_how_to_build_it() -> None:
    with pytest.raises(llama_ffi.RpcUnavailableError, match="LLAMA_FFI_RPC=1"):
        llama_ffi.add_rpc_servers(["127.0.0.1:50052"])
    with pytest.raises(FileNotFoundError, match="LLAMA_FFI_RPC=1"):
        llama_ffi.rpc_server_path()
