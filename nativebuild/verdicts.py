"""What a real decode taught us about this CPU, remembered for later builds.

The instruction probe cannot see every fault (ggml's AMX kernels die on some virtual CPUs
whose AMX passes the probe). When a proof shows an extension is unusable, the verdict is
kept in the cache under the CPU's identity, so that builds which cannot be proven here
(a CUDA build without a GPU) leave it off from the start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

from . import cpu_probe


def cpu_identity() -> str:
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    lines = [l for l in text.splitlines() if l.startswith(("model name", "flags"))][:2]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _path(cache: pathlib.Path) -> pathlib.Path:
    return cache / "cpu-verdicts.json"


def load(cache: pathlib.Path) -> dict[str, str]:
    try:
        return json.loads(_path(cache).read_text()).get(cpu_identity(), {})
    except (OSError, ValueError):
        return {}


def record(cache: pathlib.Path, verdicts: dict[str, str]) -> None:
    path = _path(cache)
    try:
        everything = json.loads(path.read_text())
    except (OSError, ValueError):
        everything = {}
    everything.setdefault(cpu_identity(), {}).update(verdicts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(everything, indent=2) + "\n")


def apply(result: cpu_probe.ProbeResult, verdicts: dict[str, str]) -> cpu_probe.ProbeResult:
    """The probe's result with the remembered failures turned off."""
    known = {name: why for name, why in verdicts.items() if name in result.usable}
    if not known:
        return result
    return dataclasses.replace(
        result,
        usable=tuple(n for n in result.usable if n not in known),
        disabled={**result.disabled, **{n: f"{why} (remembered)" for n, why in known.items()}},
    )
