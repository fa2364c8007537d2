"""Configure, compile and stage one build; reuse it from the cache when the inputs are the same."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

from . import backends, cpu_probe, model, pins, prove, verdicts
from .source import Source

SCHEMA = 1                       # bump when the layout of a cached build changes
# libmtmd (multimodal: images and audio) is part of every build: the binding links it.
BASE_TARGETS = ("llama", "mtmd", "llama-simple")
# Upstream's tools that tests and benchmarks compare against (--with-server).
REFERENCE_TARGETS = ("llama-server", "llama-mtmd-cli")
# Upstream's RPC server (tools/rpc, "rpc-server"; its CMake target is named ggml-rpc-server):
# it serves this machine's devices to a libllama elsewhere (--rpc).
RPC_TARGETS = ("ggml-rpc-server",)
# The tools that are staged into bin/ when they were built.
TOOL_PREFIXES = ("llama-", "ggml-rpc-")
# Public headers outside include/ and ggml/include that the binding is generated from.
EXTRA_HEADERS = ("tools/mtmd/mtmd.h", "tools/mtmd/mtmd-helper.h")
_ENV_THAT_CHANGES_BUILDS = ("CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS", "CUDAFLAGS", "CUDACXX",
                            "HIPCXX", "HIP_PATH")


class BuildError(RuntimeError):
    pass


@dataclasses.dataclass
class Plan:
    source: Source
    options: backends.BuildOptions
    targets: tuple[str, ...]
    jobs: int
    cache: pathlib.Path
    probe: cpu_probe.ProbeResult | None
    notes: dict = dataclasses.field(default_factory=dict)   # feature -> why it was turned off late

    @property
    def args(self) -> list[str]:
        return backends.cmake_args(self.options)

    def _digest(self, args: list[str]) -> str:
        inputs = {
            "schema": SCHEMA,
            "commit": self.source.commit,
            "source": str(self.source.path) if self.source.route == "local" else self.source.route,
            "backend": self.options.backend,
            "args": args,
            "compiler": compiler_version(),
            "env": {k: os.environ[k] for k in _ENV_THAT_CHANGES_BUILDS if k in os.environ},
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        """Identifies the build's result: every input, the CPU extensions included."""
        return self._digest(self.args)

    @property
    def root(self) -> pathlib.Path:
        """One build tree per source and backend: plans that differ only in CPU extensions or
        in link options share it, so turning one extension off recompiles ggml-cpu alone."""
        no_cpu = dataclasses.replace(self.options, cpu_options=())
        return self.cache / "builds" / self._digest(backends.compile_args(no_cpu))

    @property
    def out(self) -> pathlib.Path:
        return self.root / "out" / self.key


def compiler_version() -> str:
    cc = os.environ.get("CC", "cc")
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def _locked(path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stream(cmd: list[str], cwd: pathlib.Path, log, label: str) -> None:
    """Run `cmd`, echoing its progress lines; keep the rest for the error message."""
    log(f"$ {' '.join(cmd)}")
    tail: list[str] = []
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    assert proc.stdout is not None
    progress = re.compile(r"^\[\s*\d+/\d+\]|^\[\s*\d+%\]")
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if progress.match(line):
            log("  " + line[:150])
    if proc.wait() != 0:
        raise BuildError(f"{label} failed (exit {proc.returncode}); last output:\n" + "\n".join(tail))


def _configure(plan: Plan, build_dir: pathlib.Path, log) -> None:
    stamp = build_dir / "llama-ffi-configured.json"
    if (build_dir / "CMakeCache.txt").exists() and stamp.exists() and json.loads(stamp.read_text()) == plan.args:
        return
    build_dir.mkdir(parents=True, exist_ok=True)
    generator = [] if (build_dir / "CMakeCache.txt").exists() else backends.generator()
    cmd = ["cmake", "-S", str(plan.source.path), "-B", str(build_dir), *generator, *plan.args]
    _stream(cmd, build_dir, log, "cmake configure")
    stamp.write_text(json.dumps(plan.args))


def _compile(plan: Plan, build_dir: pathlib.Path, log) -> None:
    cmd = ["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(plan.jobs),
           "--target", *plan.targets]
    _stream(cmd, build_dir, log, "compile")


def _stage(plan: Plan, build_dir: pathlib.Path, out: pathlib.Path) -> dict:
    """Copy what the binding needs (headers, shared libraries, tools) into `out`."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "lib").mkdir(parents=True)
    (out / "include").mkdir()
    (out / "bin").mkdir()
    products = build_dir / "bin"
    libs = []
    for lib in sorted(products.glob("lib*.so*")) + sorted(products.glob("lib*.dylib")):
        shutil.copy2(lib, out / "lib" / lib.name, follow_symlinks=False)
        libs.append(lib.name)
    for header_dir in (plan.source.path / "include", plan.source.path / "ggml" / "include"):
        for header in header_dir.glob("*.h"):
            shutil.copy2(header, out / "include" / header.name)
    for relative in EXTRA_HEADERS:
        header = plan.source.path / relative
        if header.is_file():   # an older --source tree may lack libmtmd
            shutil.copy2(header, out / "include" / header.name)
    tools = []
    for target in plan.targets:
        exe = products / target
        if target.startswith(TOOL_PREFIXES) and exe.exists():
            shutil.copy2(exe, out / "bin" / target)
            tools.append(target)
    return {"libraries": libs, "tools": tools}


def build(plan: Plan, log, *, clean: bool = False) -> dict:
    """Build (or reuse) `plan` and return its manifest, without proving it."""
    root = plan.root
    manifest_path = plan.out / "manifest.json"
    with _locked(root / ".lock"):
        if clean:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        if manifest_path.exists():
            cached = json.loads(manifest_path.read_text())
            if set(plan.targets) <= set(cached.get("targets", ())):
                log(f"cached build {plan.key} reused ({plan.out})")
                return cached
        started = time.monotonic()
        build_dir = root / "build"
        _configure(plan, build_dir, log)
        _compile(plan, build_dir, log)
        products = _stage(plan, build_dir, plan.out)
        manifest = {
            "backend": plan.options.backend,
            "upstream_commit": plan.source.commit,
            "source_route": plan.source.route,
            "source_dir": str(plan.source.path),
            "cmake_args": plan.args,
            "portable": plan.options.portable,
            "rpc": plan.options.rpc,
            "cpu_features_reported": list(plan.probe.reported) if plan.probe else [],
            "cpu_features": [name for name in (plan.probe.usable if plan.probe else ())
                             if name not in plan.notes],
            "cpu_features_disabled": {**(plan.probe.disabled if plan.probe else {}), **plan.notes},
            "targets": list(plan.targets),
            **products,
            "build_seconds": round(time.monotonic() - started, 1),
            "cache_key": plan.key,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "compiler": compiler_version(),
            "python": sys.version.split()[0],
        }
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        log(f"built in {manifest['build_seconds']} s")
        return manifest


def without_amx(plan: Plan, why: str) -> Plan:
    """The same plan with the AMX extensions off, for a CPU that reports AMX but fails with it."""
    amx = {f.cmake for f in cpu_probe.FEATURES if f.name.startswith("amx")}
    opts = tuple((name, on and name not in amx) for name, on in plan.options.cpu_options)
    notes = dict(plan.notes)
    for f in cpu_probe.FEATURES:
        if f.name.startswith("amx") and plan.probe and f.name in plan.probe.usable:
            notes[f.name] = why
    return dataclasses.replace(plan, options=dataclasses.replace(plan.options, cpu_options=opts),
                               notes=notes)


def amx_enabled(plan: Plan) -> bool:
    return any(on and name.startswith("GGML_AMX") for name, on in plan.options.cpu_options)


def _save(plan: Plan, manifest: dict) -> None:
    (plan.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def build_and_prove(plan: Plan, log, *, clean: bool, check: bool) -> tuple[Plan, dict]:
    manifest = build(plan, log, clean=clean)
    if not check:
        manifest["proof"] = "skipped"
        return plan, manifest
    while True:
        earlier = manifest.get("proof") if isinstance(manifest.get("proof"), dict) else {}
        if earlier.get("output"):
            # A cached result is immutable under its key: proven once is proven.
            log(f"build proven on {earlier.get('at', 'an earlier run')}")
            return plan, manifest
        if earlier.get("failed"):
            proof = prove.Proof(False, failure=earlier["failed"])
        else:
            weights = model.ensure_model(plan.cache, log)
            log(f"proving the build: decoding {prove.PROMPT!r} with {weights.name}")
            proof = prove.prove(plan.out, weights)
        if proof.ok:
            log(f"proof ok: {proof.output.strip()!r}")
            manifest["system_info"] = proof.system_info
            manifest["proof"] = {"prompt": prove.PROMPT, "output": proof.output.strip(),
                                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _save(plan, manifest)
            return plan, manifest
        manifest["proof"] = {"failed": proof.failure}
        _save(plan, manifest)
        if not amx_enabled(plan):
            raise BuildError(f"the build does not work: {proof.failure}\n"
                             f"(library and tools are in {plan.out})")
        # The instruction probe passed, yet ggml's AMX kernels can still fault or miscompute
        # on virtual CPUs; the decode is the final word.
        why = f"the probe ran, but a real decode with AMX kernels failed: {proof.failure}"
        log(f"AMX: {why}; rebuilding without AMX")
        first_seconds = manifest["build_seconds"]
        plan = without_amx(plan, why)
        verdicts.record(plan.cache, {n: why for n in plan.notes})
        manifest = build(plan, log, clean=False)
        if "proof" not in manifest:
            manifest["build_seconds"] = round(manifest["build_seconds"] + first_seconds, 1)
            _save(plan, manifest)


def install(out: pathlib.Path, dest: pathlib.Path, log) -> None:
    """Replace `dest` with a copy of the staged build `out`."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp, symlinks=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    log(f"installed into {dest}")


def default_cache() -> pathlib.Path:
    if os.environ.get("LLAMA_FFI_CACHE"):
        return pathlib.Path(os.environ["LLAMA_FFI_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "llama-ffi"


__all__ = ["BuildError", "Plan", "build_and_prove", "install", "default_cache", "pins"]
