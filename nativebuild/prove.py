"""Prove a build: load the library, load the default model, decode a prompt, check the answer."""

from __future__ import annotations

import ctypes
import dataclasses
import pathlib
import signal
import subprocess

PROMPT = "The capital of France is"
EXPECTED = "Paris"   # SmolLM2-135M-Instruct's greedy continuation, on any correct build


@dataclasses.dataclass
class Proof:
    ok: bool
    system_info: str = ""
    output: str = ""
    failure: str = ""
    signal: int | None = None


def system_info(libdir: pathlib.Path) -> str:
    lib = ctypes.CDLL(str(libdir / "libllama.so"))
    lib.llama_print_system_info.restype = ctypes.c_char_p
    return lib.llama_print_system_info().decode()


def prove(out: pathlib.Path, model: pathlib.Path, *, timeout: int = 300) -> Proof:
    try:
        info = system_info(out / "lib")
    except OSError as exc:
        return Proof(False, failure=f"libllama.so does not load: {exc}")
    tool = out / "bin" / "llama-simple"
    # The decode runs in a child so that a SIGILL in a kernel fails the proof, not the build script.
    try:
        run = subprocess.run([str(tool), "-m", str(model), "-n", "8", PROMPT],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Proof(False, info, failure=f"decoding took longer than {timeout} s")
    if run.returncode < 0:
        sig = -run.returncode
        return Proof(False, info, run.stdout, f"decoding died with {signal.Signals(sig).name}", sig)
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-5:])
        return Proof(False, info, run.stdout, f"llama-simple exited {run.returncode}: {tail}")
    if EXPECTED not in run.stdout:
        return Proof(False, info, run.stdout,
                     f"greedy decode gave {run.stdout.strip()!r}, expected it to mention {EXPECTED!r}"
                     " (the build computes wrong results)")
    return Proof(True, info, run.stdout)
