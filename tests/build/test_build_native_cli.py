"""build_native.py as a user runs it."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from nativebuild import cpu_probe

REPO = pathlib.Path(__file__).resolve().parents[2]
NATIVE = REPO / "llama_ffi" / "_native"


def run(*args, **env):
    return subprocess.run([sys.executable, str(REPO / "build_native.py"), *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **env})


def test_unknown_backend_is_an_error_naming_the_choices():
    result = run("--backend", "directx")
    assert result.returncode == 2
    assert "cpu, cuda, vulkan, metal, hip, sycl, blas" in result.stderr


def test_unknown_backend_from_the_environment_too():
    result = run(LLAMA_FFI_BACKEND="directx")
    assert result.returncode == 2 and "directx" in result.stderr


@pytest.mark.skipif(not (NATIVE / "manifest.json").exists(), reason="needs a staged build")
def test_same_inputs_reuse_the_cached_build(tmp_path):
    staged = json.loads((NATIVE / "manifest.json").read_text())
    extra = ["--with-server"] if "llama-server" in staged["targets"] else []
    extra += ["--rpc"] if staged.get("rpc") else []
    result = run(*extra, "--dest", str(tmp_path / "native"))
    assert result.returncode == 0, result.stderr
    assert "reused" in result.stderr
    copy = json.loads((tmp_path / "native" / "manifest.json").read_text())
    assert copy["cache_key"] == staged["cache_key"]
    assert (tmp_path / "native" / "lib" / "libllama.so").exists()


@pytest.mark.skipif(not (NATIVE / "manifest.json").exists(), reason="needs a staged build")
def test_manifest_records_what_was_built():
    manifest = json.loads((NATIVE / "manifest.json").read_text())
    assert manifest["upstream_commit"].startswith("0c1e57098")
    assert manifest["backend"] in ("cpu", "cuda", "vulkan", "metal", "hip", "sycl", "blas")
    assert "libllama.so" in manifest["libraries"]
    assert manifest["proof"]["output"]
    # Whatever the CPU reported but could not run is off in the build.
    option_of = {f.name: f.cmake for f in cpu_probe.FEATURES}
    for name in manifest["cpu_features_disabled"]:
        assert f"-D{option_of[name]}=OFF" in manifest["cmake_args"]
