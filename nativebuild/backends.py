"""The CMake arguments each backend needs, as a pure function of the build's options."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil

BACKENDS = ("cpu", "cuda", "vulkan", "metal", "hip", "sycl", "blas")


class BackendError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    backend: str = "cpu"
    portable: bool = False
    cpu_options: tuple[tuple[str, bool], ...] = ()   # GGML_* -> on/off, from the CPU probe
    cuda_architectures: str | None = None
    cuda_no_vmm: bool = False
    cublas_root: str | None = None                    # a tree with include/ and lib/ for cuBLAS
    hip_targets: str | None = None
    blas_vendor: str = "OpenBLAS"
    rpc: bool = False                                 # also upstream's rpc-server (the tool)
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise BackendError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")


def _on(value: bool) -> str:
    return "ON" if value else "OFF"


def common_args() -> list[str]:
    return [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=ON",
        # Staged libraries sit in lib/ and tools in bin/: both find the libraries by $ORIGIN.
        "-DCMAKE_BUILD_RPATH=$ORIGIN;$ORIGIN/../lib",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=ON",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DGGML_CCACHE=OFF",
    ]


def cpu_args(options: BuildOptions) -> list[str]:
    if options.portable:
        # ggml's own baseline when not native: SSE4.2, AVX, AVX2, FMA, F16C, BMI2.
        return ["-DGGML_NATIVE=OFF"]
    if not options.cpu_options:
        return ["-DGGML_NATIVE=ON"]
    # -march=native would switch on whatever CPUID reports, including what cannot run here:
    # name each extension the probe proved instead.
    return ["-DGGML_NATIVE=OFF"] + [f"-D{name}={_on(on)}" for name, on in options.cpu_options]


def rpc_args(options: BuildOptions) -> list[str]:
    # RPC is a backend beside the main one (remote devices over TCP), not instead of it. It is
    # in every build: it is small, `llamaserver --rpc` then needs no other build, and the
    # quick-start and test builds share one tree instead of compiling everything twice.
    return ["-DGGML_RPC=ON"]


def backend_args(options: BuildOptions) -> list[str]:
    b = options.backend
    if b == "cpu":
        return []
    if b == "cuda":
        args = ["-DGGML_CUDA=ON",
                f"-DCMAKE_CUDA_ARCHITECTURES={options.cuda_architectures or 'native'}"]
        if options.cuda_no_vmm:
            args.append("-DGGML_CUDA_NO_VMM=ON")
        if options.cublas_root:
            root = pathlib.Path(options.cublas_root)
            args += [f"-DCUDA_cublas_LIBRARY={root / 'lib' / 'libcublas.so'}",
                     f"-DCUDA_cublasLt_LIBRARY={root / 'lib' / 'libcublasLt.so'}",
                     f"-DCMAKE_CUDA_FLAGS=-I{root / 'include'}",
                     f"-DCMAKE_CXX_FLAGS=-I{root / 'include'}"]
        return args
    if b == "vulkan":
        return ["-DGGML_VULKAN=ON"]
    if b == "metal":
        return ["-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON"]
    if b == "hip":
        args = ["-DGGML_HIP=ON"]
        if options.hip_targets:
            args.append(f"-DGPU_TARGETS={options.hip_targets}")
        return args
    if b == "sycl":
        return ["-DGGML_SYCL=ON", "-DCMAKE_C_COMPILER=icx", "-DCMAKE_CXX_COMPILER=icpx"]
    if b == "blas":
        return ["-DGGML_BLAS=ON", f"-DGGML_BLAS_VENDOR={options.blas_vendor}"]
    raise BackendError(b)


def link_args(options: BuildOptions) -> list[str]:
    """Arguments that change only how things are linked (a change relinks, never recompiles)."""
    if options.backend == "cuda" and options.cublas_root:
        # cuBLAS outside the toolkit: the linker must find libcublas.so.N for the tools, and
        # the staged libraries find it at run time through their rpath.
        lib = (pathlib.Path(options.cublas_root) / "lib").resolve()
        real = (lib / "libcublas.so").resolve().parent
        return [f"-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,{real}",
                f"-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath-link,{real}",
                f"-DCMAKE_BUILD_RPATH=$ORIGIN;$ORIGIN/../lib;{real}"]
    return []


def cmake_args(options: BuildOptions) -> list[str]:
    return compile_args(options) + link_args(options)


def compile_args(options: BuildOptions) -> list[str]:
    return (common_args() + cpu_args(options) + backend_args(options) + rpc_args(options)
            + list(options.extra_args))


def generator() -> list[str]:
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def cuda_driver_present() -> bool:
    """Whether libcuda (the driver) can be linked; without it ggml must not use CUDA's VMM API."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/cuda/lib64/stubs",
              "/usr/lib/wsl/lib", *os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        if d and pathlib.Path(d, "libcuda.so").exists():
            return True
    return False
