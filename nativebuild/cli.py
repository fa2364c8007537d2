"""Command line and environment variables of build_native.py.

Every option has an environment variable, because `pip install .` runs this build through
setup.py, where there is no command line: `LLAMA_FFI_BACKEND=cuda pip install .`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
import time

from . import backends, cpu_probe, verdicts
from .build import (BuildError, Plan, BASE_TARGETS, REFERENCE_TARGETS, RPC_TARGETS, build_and_prove,
                    default_cache, install)
from .source import SourceError, acquire

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / "llama_ffi" / "_native"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="build_native.py",
                                description="Build libllama from upstream llama.cpp for one backend.")
    p.add_argument("--backend", default=env("LLAMA_FFI_BACKEND", "cpu"),
                   help=f"one of {', '.join(backends.BACKENDS)} (env LLAMA_FFI_BACKEND; default cpu)")
    p.add_argument("--jobs", "-j", type=int, default=int(env("LLAMA_FFI_JOBS", os.cpu_count() or 2)),
                   help="parallel compile jobs (env LLAMA_FFI_JOBS)")
    p.add_argument("--source", type=pathlib.Path, default=env("LLAMA_FFI_SOURCE"),
                   help="a local llama.cpp checkout to build instead of fetching (env LLAMA_FFI_SOURCE)")
    p.add_argument("--portable", action="store_true", default=_env_flag("LLAMA_FFI_PORTABLE"),
                   help="no tuning for this CPU: ggml's generic x86-64 (AVX2) baseline (env LLAMA_FFI_PORTABLE=1)")
    p.add_argument("--clean", action="store_true", default=_env_flag("LLAMA_FFI_CLEAN"),
                   help="rebuild from scratch even when the cache has this build (env LLAMA_FFI_CLEAN=1)")
    p.add_argument("--with-server", action="store_true", default=_env_flag("LLAMA_FFI_WITH_SERVER"),
                   help="also build upstream's llama-server, llama-mtmd-cli and rpc-server (references for tests and"
                        " benchmarks; implies --rpc)")
    p.add_argument("--rpc", action="store_true", default=_env_flag("LLAMA_FFI_RPC"),
                   help="also build upstream's rpc-server, staged as bin/ggml-rpc-server, to lend this"
                        " machine's devices to a llamaserver --rpc elsewhere; ggml's RPC backend itself"
                        " is in every build (env LLAMA_FFI_RPC=1)")
    p.add_argument("--cuda-arch", default=env("LLAMA_FFI_CUDA_ARCHITECTURES"),
                   help="CMAKE_CUDA_ARCHITECTURES, e.g. 90 or '80;86;90' (default: native)")
    p.add_argument("--cublas-root", default=env("LLAMA_FFI_CUBLAS_ROOT"),
                   help="a tree with include/ and lib/ holding cuBLAS when the CUDA toolkit lacks it"
                        " (default: PyPI's nvidia-cublas wheel when installed)")
    p.add_argument("--hip-targets", default=env("LLAMA_FFI_HIP_TARGETS"), help="GPU_TARGETS for hip, e.g. gfx1100")
    p.add_argument("--blas-vendor", default=env("LLAMA_FFI_BLAS_VENDOR", "OpenBLAS"), help="GGML_BLAS_VENDOR")
    p.add_argument("--cmake-arg", action="append", default=shlex.split(env("LLAMA_FFI_CMAKE_ARGS", "")),
                   help="an extra -DNAME=VALUE for CMake, repeatable (env LLAMA_FFI_CMAKE_ARGS)")
    p.add_argument("--cache-dir", type=pathlib.Path, default=default_cache(),
                   help="where builds are cached (env LLAMA_FFI_CACHE; default ~/.cache/llama-ffi)")
    p.add_argument("--dest", type=pathlib.Path, default=DEFAULT_DEST,
                   help="where the binding looks for the build (default llama_ffi/_native)")
    p.add_argument("--no-prove", action="store_true", default=_env_flag("LLAMA_FFI_NO_PROVE"),
                   help="skip the decode check (for cross builds or GPU builds on a machine without the GPU)")
    p.add_argument("--probe-only", action="store_true", help="print what the CPU can run and exit")
    return p


def _cublas_from_wheel() -> str | None:
    """PyPI's nvidia-cublas wheel ships headers and libraries under nvidia/cu*/ or nvidia/cublas/."""
    for entry in sys.path:
        base = pathlib.Path(entry) / "nvidia"
        for candidate in sorted(base.glob("cu*")) + [base / "cublas"]:
            if (candidate / "include" / "cublas_v2.h").exists():
                return str(candidate)
    return None


def _cublas_link_tree(root: str, cache: pathlib.Path) -> str:
    """A tree whose lib/ has the unversioned libcublas*.so names the linker looks for.

    Wheels ship only libcublas.so.13 and the like; the links live in the cache, not in the
    user's site-packages."""
    src = pathlib.Path(root)
    tree = cache / "cublas-links" / src.name
    (tree / "lib").mkdir(parents=True, exist_ok=True)
    include = tree / "include"
    if not include.exists():
        include.symlink_to(src / "include")
    for versioned in (src / "lib").glob("lib*.so*"):
        plain = tree / "lib" / (versioned.name.split(".so")[0] + ".so")
        if not plain.exists():
            plain.symlink_to(versioned)
    return str(tree)


def options_from(ns: argparse.Namespace, probe: cpu_probe.ProbeResult | None) -> backends.BuildOptions:
    cpu_options = tuple(sorted(probe.cmake_options().items())) if probe else ()
    cuda = ns.backend == "cuda"
    cublas = (ns.cublas_root or _cublas_from_wheel()) if cuda else None
    return backends.BuildOptions(
        backend=ns.backend,
        portable=ns.portable,
        cpu_options=cpu_options,
        cuda_architectures=ns.cuda_arch,
        cuda_no_vmm=cuda and not backends.cuda_driver_present(),
        cublas_root=_cublas_link_tree(cublas, ns.cache_dir) if cublas else None,
        hip_targets=ns.hip_targets,
        blas_vendor=ns.blas_vendor,
        rpc=ns.rpc,
        extra_args=tuple(ns.cmake_arg),
    )


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[build_native {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if ns.backend not in backends.BACKENDS:
        log(f"unknown backend {ns.backend!r}; choose one of: {', '.join(backends.BACKENDS)}")
        return 2
    probe = None
    if cpu_probe.is_x86() and not ns.portable:
        probe = verdicts.apply(cpu_probe.probe(), verdicts.load(ns.cache_dir))
        log(f"CPU reports: {' '.join(probe.reported) or 'nothing known'}")
        for name, why in probe.disabled.items():
            log(f"  {name} turned off: {why}")
    if ns.probe_only:
        return 0
    try:
        source = acquire(ns.cache_dir, ns.source, log)
        # The reference tools include rpc-server: the tests of llamaserver --rpc use it.
        ns.rpc = ns.rpc or ns.with_server
        targets = (BASE_TARGETS + (REFERENCE_TARGETS if ns.with_server else ())
                   + (RPC_TARGETS if ns.rpc else ()))
        plan = Plan(source, options_from(ns, probe), targets, max(1, ns.jobs), ns.cache_dir, probe)
        log(f"backend {plan.options.backend}, cache key {plan.key}")
        plan, manifest = build_and_prove(plan, log, clean=ns.clean, check=not ns.no_prove)
        install(plan.out, ns.dest, log)
    except (BuildError, SourceError, backends.BackendError, OSError) as exc:
        log(f"FAILED: {exc}")
        return 1
    log(f"done in {time.monotonic() - started:.1f} s: {manifest['backend']} build of "
        f"{manifest['upstream_commit'][:9]} ({manifest['source_route']})")
    return 0
