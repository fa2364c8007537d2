"""llama_ffi.numa_init: ggml's process-wide NUMA strategy."""

from __future__ import annotations

import pytest


def test_numa_strategy_is_applied_once(caplog: pytest.LogCaptureFixture) -> None:
    import llama_ffi

    with pytest.raises(ValueError, match="unknown NUMA strategy"):
        llama_ffi.numa_init("everywhere")
    llama_ffi.numa_init("distribute")  # harmless on one node; the process keeps it
    llama_ffi.numa_init("distribute")
    with caplog.at_level("WARNING", logger="llama_ffi"):
        llama_ffi.numa_init("isolate")
    assert "already uses 'distribute'" in caplog.text
