"""The soak (bench/soak.py), short: 8 streaming clients over 4 slots for 60 s (the CI version), a quarter of
the requests left by their client at a random point.  Nothing is lost or garbled, slots and
queue end idle, file descriptors and threads come back, and a slot lets go of a request
within a second of its client leaving (the 30-minute figures are in the README)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import soak  # noqa: E402


def test_soak_short(tmp_path: Path) -> None:
    # one thread per decode: on a shared machine OpenMP's spinning threads can stall for
    # seconds when a core is taken away
    config = soak.Config(duration=60, clients=8, parallel=4, disconnect=0.25, warmup=8,
                         sample_every=1.0, server_args=["-t", "1"])
    report = soak.run(config, tmp_path / "server.log")
    summary = report.summary()
    assert report.lost == [] and report.garbled == [], summary
    assert report.errors == {}, summary
    assert report.completed > 10, summary
    assert summary["slots_busy_end"] == 0 and summary["queue_end"] == 0, summary
    assert summary["exit_status"] == 0 and not summary["traceback_in_log"], summary
    # back to where they were after the warm-up: a few worker threads may start later
    assert summary["fds"]["end"] <= summary["fds"]["baseline"] + 2, summary
    assert summary["threads"]["end"] <= summary["threads"]["baseline"] + 3, summary
    cut = summary["cut_to_idle_ms"]
    assert sum(report.cut.values()) > 0, summary
    if cut["n"]:
        assert cut["p99"] < 1000, summary
