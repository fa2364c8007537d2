"""``check_projector_file``: load a projector in a child process before trusting it in this one.

libmtmd validates a projector file only partly: a metadata key of another type than it reads
(``gguf_get_val_u32`` on an int32) aborts, a tensor of the wrong shape fails a ``GGML_ASSERT``
in the warm-up graph, a missing attention tensor is a NULL dereference. None of these can be
turned into an exception, so a file from an untrusted source is loaded once in a child first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from llama_ffi._errors import ModelLoadError

__all__ = ["check_projector_file"]

_CHILD = """
import sys
from llama_ffi import Model, Projector
with Model(sys.argv[1], n_gpu_layers=0) as model, Projector(model, sys.argv[2], use_gpu=False, n_threads=1):
    pass
"""


def check_projector_file(model_path: str | os.PathLike[str], mmproj_path: str | os.PathLike[str], *,
                         timeout: float = 300.0) -> None:
    """Load ``mmproj_path`` for the model at ``model_path`` (with its warm-up encode) in a child
    process; ``ModelLoadError`` saying how it failed if it does not load cleanly there."""
    for path in (model_path, mmproj_path):
        if not Path(path).is_file():
            raise ModelLoadError(f"file not found: {os.fspath(path)}")
    try:
        # no gdb backtrace from ggml's abort handler: slow, and only the assertion line is read
        done = subprocess.run([sys.executable, "-c", _CHILD, os.fspath(model_path), os.fspath(mmproj_path)],
                              capture_output=True, text=True, errors="replace", timeout=timeout,
                              env={**os.environ, "GGML_NO_BACKTRACE": "1"})
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"loading projector {os.fspath(mmproj_path)} took over {timeout} s") from exc
    if done.returncode == 0:
        return
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    # a failed assertion says what is wrong; else the child's last line, the exception it raised
    detail = next((line for line in lines if "GGML_ASSERT" in line), lines[-1] if lines else "")
    detail = detail.split("ModelLoadError: ", 1)[-1]
    if done.returncode < 0:
        how = f"crashed the loading process ({signal.Signals(-done.returncode).name})"
    else:
        how = f"failed to load (exit {done.returncode})"
    raise ModelLoadError(f"projector {os.fspath(mmproj_path)} {how}: {detail.strip()[:300]}")
