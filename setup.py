"""Build hooks: libllama first (build_native.py, cached), then the cffi extension against it.

The cffi builder is imported only after the native build, because its declarations are
generated from the llama.h that build produced.
"""

import importlib.util
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
    subprocess.check_call([sys.executable, str(ROOT / "build_native.py")], cwd=ROOT)
    ensure_native.done = True


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
    def run(self):
        ensure_native()
        ffibuilder = _load_cffi_builder()

        tmpdir = pathlib.Path(self.build_temp) / "cffi"
        tmpdir.mkdir(parents=True, exist_ok=True)
        self.extensions = [ffibuilder.distutils_extension(str(tmpdir))]
        super().run()


setup(
    ext_modules=[Extension("llama_ffi._llama_cffi", sources=[])],   # replaced in BuildExt
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
)
