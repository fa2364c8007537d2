"""The CMake arguments each backend produces, and the cache key's behaviour."""

import dataclasses
import pathlib

import pytest

from nativebuild import backends, cpu_probe
from nativebuild.build import Plan, without_amx
from nativebuild.source import Source

ALL_ON = tuple((f.cmake, True) for f in cpu_probe.FEATURES)


def args_for(**kw) -> list[str]:
    return backends.cmake_args(backends.BuildOptions(**kw))


def test_unknown_backend_lists_the_choices():
    with pytest.raises(backends.BackendError) as err:
        backends.BuildOptions(backend="opencl2")
    for name in backends.BACKENDS:
        assert name in str(err.value)


@pytest.mark.parametrize("backend, expected", [
    ("cuda", "-DGGML_CUDA=ON"),
    ("vulkan", "-DGGML_VULKAN=ON"),
    ("metal", "-DGGML_METAL=ON"),
    ("hip", "-DGGML_HIP=ON"),
    ("sycl", "-DGGML_SYCL=ON"),
    ("blas", "-DGGML_BLAS=ON"),
])
def test_each_backend_switches_on_its_ggml_option(backend, expected):
    args = args_for(backend=backend)
    assert expected in args
    others = {"-DGGML_CUDA=ON", "-DGGML_VULKAN=ON", "-DGGML_METAL=ON", "-DGGML_HIP=ON",
              "-DGGML_SYCL=ON", "-DGGML_BLAS=ON"} - {expected}
    assert not others & set(args)


def test_cpu_backend_is_shared_and_names_no_gpu():
    args = args_for()
    assert "-DBUILD_SHARED_LIBS=ON" in args
    assert not [a for a in args if a.startswith(("-DGGML_CUDA", "-DGGML_VULKAN", "-DGGML_HIP"))]


def test_probed_cpu_features_replace_march_native():
    opts = (("GGML_AVX2", True), ("GGML_AMX_INT8", False))
    args = args_for(cpu_options=opts)
    assert "-DGGML_NATIVE=OFF" in args
    assert "-DGGML_AVX2=ON" in args and "-DGGML_AMX_INT8=OFF" in args


def test_portable_uses_ggml_baseline_without_per_feature_flags():
    args = args_for(portable=True, cpu_options=ALL_ON)
    assert "-DGGML_NATIVE=OFF" in args
    assert not [a for a in args if a.startswith("-DGGML_AVX")]


def test_cuda_options():
    args = args_for(backend="cuda", cuda_architectures="90", cuda_no_vmm=True, cublas_root="/x/cu13")
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in args
    assert "-DGGML_CUDA_NO_VMM=ON" in args
    assert "-DCUDA_cublas_LIBRARY=/x/cu13/lib/libcublas.so" in args
    assert "-DCMAKE_CUDA_ARCHITECTURES=native" in args_for(backend="cuda")
    # the tools link against libcublas.so.N from outside the toolkit, and find it at run time
    assert "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,/x/cu13/lib" in args
    assert args[-1] == "-DCMAKE_BUILD_RPATH=$ORIGIN;$ORIGIN/../lib;/x/cu13/lib"


def test_link_options_do_not_change_the_build_tree(monkeypatch):
    plan = _plan(backend="cuda", cublas_root="/x/cu13")
    links = backends.link_args(plan.options)
    assert links and not set(links) & set(backends.compile_args(plan.options))
    root, key = plan.root, plan.key
    monkeypatch.setattr(backends, "link_args", lambda options: [])
    assert plan.root == root          # the tree is kept: a link change relinks only
    assert plan.key != key            # but the result is a different build


def test_hip_targets_and_blas_vendor():
    assert "-DGPU_TARGETS=gfx1100" in args_for(backend="hip", hip_targets="gfx1100")
    assert "-DGGML_BLAS_VENDOR=Intel10_64lp" in args_for(backend="blas", blas_vendor="Intel10_64lp")


def test_extra_args_come_last():
    assert args_for(extra_args=("-DGGML_LTO=ON",))[-1] == "-DGGML_LTO=ON"


def _plan(**kw) -> Plan:
    source = Source(pathlib.Path("/src"), "0c1e57098bba43ac29e6e3b677cdceebdd22334f", "sdist")
    return Plan(source, backends.BuildOptions(**kw), ("llama",), 2, pathlib.Path("/cache"), None)


def test_cache_key_follows_every_input_and_the_tree_follows_all_but_cpu_features():
    base = _plan(cpu_options=ALL_ON)
    assert base.key == _plan(cpu_options=ALL_ON).key
    no_amx = without_amx(dataclasses.replace(base), "test")
    assert no_amx.key != base.key
    assert no_amx.root == base.root          # only ggml-cpu is recompiled
    assert _plan(backend="vulkan").root != base.root


def test_without_amx_turns_off_only_amx():
    plan = without_amx(_plan(cpu_options=ALL_ON), "decode failed")
    flags = dict(plan.options.cpu_options)
    assert not any(on for name, on in flags.items() if name.startswith("GGML_AMX"))
    assert flags["GGML_AVX512"] and flags["GGML_AVX2"]


@pytest.mark.skipif(not cpu_probe.is_x86(), reason="x86 probe")
def test_probe_runs_instructions_not_just_cpuinfo():
    result = cpu_probe.probe()
    assert set(result.usable) <= set(result.reported)
    assert set(result.disabled) == set(result.reported) - set(result.usable)
    assert set(result.cmake_options()) == {f.cmake for f in cpu_probe.FEATURES}


def test_every_build_has_ggml_rpc_beside_its_backend_and_one_tree():
    assert "-DGGML_RPC=ON" in args_for()
    assert "-DGGML_RPC=ON" in args_for(backend="cuda")
    # --rpc only adds upstream's rpc-server to the targets: same flags, same tree, same key
    assert args_for(rpc=True) == args_for()
    assert _plan(rpc=True).root == _plan().root and _plan(rpc=True).key == _plan().key
