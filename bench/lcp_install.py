"""Install llama-cpp-python's server into bench/.venv-lcp, bound to the libllama this repo built.

The benchmark compares servers on the same kernels, so llama-cpp-python must not bring its own
llama.cpp: its sdist is built with LLAMA_BUILD=OFF (only the pure-Python package is installed) and
at run time LLAMA_CPP_LIB_PATH points it at llama_ffi/_native/lib. The pinned sdist vendors
llama.cpp at the very commit we build, so its ctypes declarations match our library.

It gets its own virtual environment so that its server dependencies (fastapi, uvicorn, ...) stay
out of the project's. Safe to run again: it does nothing when the right version is installed.

    python bench/lcp_install.py          # prints the venv's python on the last line of stdout
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
VENV = REPO / "bench" / ".venv-lcp"
PYTHON = VENV / "bin" / "python"
LOG = REPO / "bench" / ".lcp-install.log"
# Modules the `[server]` extra must make importable; a partial install is redone.
SERVER_MODULES = ("llama_cpp.server", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                  "pydantic_settings")
# Build only the Python package: no llama.cpp, no mtmd (LLAVA_BUILD is nested in LLAMA_BUILD,
# turned off anyway in case a later sdist un-nests it).
NO_NATIVE_BUILD = ("-Ccmake.define.LLAMA_BUILD=OFF", "-Ccmake.define.LLAVA_BUILD=OFF")

sys.path.insert(0, str(REPO))
from nativebuild import pins, pypi  # noqa: E402
from nativebuild.build import default_cache  # noqa: E402


class InstallError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"lcp_install: {message}", file=sys.stderr, flush=True)


def installed_version() -> str | None:
    """The llama-cpp-python version in the venv if it and its server extra import, else None."""
    if not PYTHON.exists():
        return None
    probe = ("import importlib.metadata as m, importlib.util, sys\n"
             f"for name in {SERVER_MODULES!r}: importlib.util.find_spec(name.split('.')[0]) or sys.exit(1)\n"
             "print(m.version('llama_cpp_python'))")
    result = subprocess.run([str(PYTHON), "-c", probe], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def sdist_path() -> pathlib.Path:
    """The pinned sdist, from the cache the native build shares, downloaded if absent or corrupt."""
    archive = default_cache() / "downloads" / pins.SDIST_FILENAME
    if archive.exists() and pypi.sha256_of(archive) == pins.SDIST_SHA256:
        return archive
    log(f"{archive} missing or not the pinned file; fetching it")
    try:
        entry = pypi.find_file(pins.SDIST_PROJECT, lambda name: name == pins.SDIST_FILENAME)
        return pypi.download(entry, archive, sha256=pins.SDIST_SHA256, log=log)
    except (OSError, ValueError) as exc:
        raise InstallError(f"cannot get {pins.SDIST_FILENAME} from {pypi.index_url()}: {exc}") from exc


def create_venv() -> None:
    log(f"creating {VENV}")
    result = subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(f"python -m venv failed: {result.stderr.strip()[-500:]}")


def pip_install(archive: pathlib.Path) -> None:
    # A CMAKE_ARGS or SKBUILD_* left in the caller's shell (say, a GPU build) must not reach this
    # build: the only CMake settings are ours, given as config settings.
    env = {k: v for k, v in os.environ.items()
           if k != "CMAKE_ARGS" and not k.startswith("SKBUILD_")}
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = "1"
    argv = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-v",
            *NO_NATIVE_BUILD,
            f"{pins.SDIST_PROJECT}[server] @ {archive.as_uri()}"]
    log(f"pip install {pins.SDIST_PROJECT}[server]=={pins.SDIST_VERSION} without llama.cpp "
        f"(log: {LOG.relative_to(REPO)})")
    with open(LOG, "w") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = LOG.read_text(errors="replace").splitlines()[-15:]
        raise InstallError("pip install failed; last lines of the log:\n  " + "\n  ".join(tail))


def check_no_native_lib() -> None:
    """LLAMA_BUILD=OFF must leave the package without a libllama of its own."""
    probe = ("import importlib.util, pathlib\n"
             "spec = importlib.util.find_spec('llama_cpp')\n"
             "lib = pathlib.Path(spec.origin).parent / 'lib'\n"
             "print('\\n'.join(str(p) for p in lib.glob('*.so*')))")
    found = subprocess.run([str(PYTHON), "-c", probe], capture_output=True, text=True,
                           timeout=60).stdout.split()
    if found:
        raise InstallError(f"the package shipped its own native libraries ({', '.join(found)}); "
                           "LLAMA_BUILD=OFF did not take effect")


def ensure_installed() -> pathlib.Path:
    version = installed_version()
    if version == pins.SDIST_VERSION:
        log(f"llama-cpp-python {version} already in {VENV.relative_to(REPO)}")
        return PYTHON
    if version:
        log(f"found llama-cpp-python {version}, want {pins.SDIST_VERSION}: reinstalling")
    archive = sdist_path()
    if not PYTHON.exists():
        create_venv()
    pip_install(archive)
    check_no_native_lib()
    version = installed_version()
    if version != pins.SDIST_VERSION:
        raise InstallError(f"after install the venv reports llama-cpp-python {version!r}, "
                           f"not {pins.SDIST_VERSION}; see {LOG}")
    log(f"installed llama-cpp-python {version}")
    return PYTHON


def main() -> int:
    try:
        print(ensure_installed())
    except InstallError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
