"""Build hooks: libllama first (build_native.py, cached), then the cffi extension against it.

The cffi builder is imported only after the native build, because its declarations are
generated from the llama.h that build produced.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent
NATIVE = ROOT / "llama_ffi" / "_native"


def ensure_native() -> None:
    """Run build_native.py once per setup.py process; it reuses its cache when nothing changed."""
    if getattr(ensure_native, "done", False):
        return
    subprocess.check_call([sys.executable, str(ROOT / "build_native.py"), *_as_staged()], cwd=ROOT)
    ensure_native.done = True


def _as_staged() -> list[str]:
    """The options of the build already staged (``python build_native.py --backend cuda`` or
    ``--with-server`` before ``pip install``), so that installing reuses it rather than
    building the CPU default over it; the environment's LLAMA_FFI_* settings still win."""
    try:
        staged = json.loads((NATIVE / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    args = []
    if "LLAMA_FFI_BACKEND" not in os.environ and staged.get("backend"):
        args += ["--backend", staged["backend"]]
    if "llama-server" in staged.get("targets", ()):
        args.append("--with-server")
    if staged.get("rpc"):
        args.append("--rpc")
    return args


def _load_cffi_builder():
    """Load the builder by path: importing it through the package would run llama_ffi's
    __init__, which needs the very extension being built."""
    spec = importlib.util.spec_from_file_location("_llama_ffi_cffi_build", ROOT / "llama_ffi" / "_cffi_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ffibuilder


class BuildPy(build_py):
    def run(self):
        ensure_native()   # the staged libraries are package data, collected here
        super().run()


class BuildExt(build_ext):
    def finalize_options(self):
        # The extension exists only once libllama is built: swap it in before setuptools
        # prepares its extensions.
        ensure_native()
        self.distribution.ext_modules = [_cffi_extension()]
        super().finalize_options()


_EXTENSION_FIELDS = ("include_dirs", "define_macros", "undef_macros", "library_dirs", "libraries",
                     "runtime_library_dirs", "extra_objects", "extra_compile_args",
                     "extra_link_args", "depends", "language")


def _cffi_extension() -> Extension:
    """cffi's generated C source as a setuptools Extension (cffi hands out a distutils one)."""
    generated = _load_cffi_builder().distutils_extension(str(ROOT / "build" / "cffi"))
    return Extension(generated.name, generated.sources,
                     **{f: getattr(generated, f) for f in _EXTENSION_FIELDS if getattr(generated, f, None)})


setup(
    ext_modules=[Extension("llama_ffi._llama_cffi", sources=[])],   # replaced in BuildExt.finalize_options
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
)
