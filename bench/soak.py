"""Soak: many streaming clients over fewer slots for a set time, some of them leaving early.

    python bench/soak.py --duration 1800 --clients 16 --parallel 4 --disconnect 0.1

Starts its own ``llamaserver`` (127.0.0.1, a free port) and stops it at the end.  Clients
send, one after another, a mix of streamed ``/completion``, chat (plain, with tools, with a
JSON schema), embeddings and tokenize; a ``--disconnect`` share of requests is left by its
client at a random point: waiting in the queue, during prompt processing or mid-generation.

Reported: requests completed; errors by kind; answers lost (no answer, not cut by the client)
or garbled (broken protocol, or a greedy answer that differs from the same request's answer
when it ran alone); the time from a disconnect until no slot serves that request (``/slots``
polled); the server's resident memory, open file descriptors and threads over time (from
``/proc``, after a warm-up); slots, queue and exit status at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak_requests import (Answer, Garbled, Request, chat_stream_answer,  # noqa: E402
                           completion_answer, cut_request, greedy_requests, json_answer,
                           sampled_request, same, sse_payloads)

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.025          # /slots polling period (disconnect-to-idle resolution)
CUT_POINTS = ("queue", "prompt", "generation")


@dataclass
class Config:
    duration: float = 60.0      # seconds of load, warm-up included
    clients: int = 16
    parallel: int = 4
    disconnect: float = 0.1     # share of requests their client leaves
    warmup: float = 10.0
    sample_every: float = 2.0
    ctx_size: int = 4096
    seed: int = 1
    server_args: list[str] = field(default_factory=list)


@dataclass
class Report:
    config: dict[str, Any]
    completed: int = 0
    cut: dict[str, int] = field(default_factory=dict)       # by where the client left
    errors: dict[str, int] = field(default_factory=dict)    # by kind
    lost: list[str] = field(default_factory=list)
    garbled: list[str] = field(default_factory=list)
    near_ties: int = 0     # greedy answers that parted from their answer alone at a near-tie
    cut_to_idle_ms: dict[str, list[float]] = field(default_factory=dict)  # by where
    samples: list[dict[str, Any]] = field(default_factory=list)   # t, process_sample()
    baseline: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)
    exit_status: int | None = None
    traceback_in_log: bool = False

    def summary(self) -> dict[str, Any]:
        held = sorted(self.cut_to_idle_ms.get("prompt", []) +
                      self.cut_to_idle_ms.get("generation", []))
        after = [s for s in self.samples if s["t"] >= self.baseline.get("t", 0)]
        return {
            "completed": self.completed, "cut": self.cut, "errors": self.errors,
            "lost": len(self.lost), "garbled": len(self.garbled), "near_ties": self.near_ties,
            # cuts whose request held a slot when its client left; the queue's apart
            "cut_to_idle_ms": {"n": len(held), "p50": percentile(held, 0.5),
                               "p99": percentile(held, 0.99), "max": max(held, default=None),
                               "queue_p99": percentile(
                                   sorted(self.cut_to_idle_ms.get("queue", [])), 0.99)},
            "rss_mb": {"baseline": self.baseline.get("rss_mb"),
                       "max": max((s["rss_mb"] for s in after), default=None),
                       "end": self.end.get("rss_mb"),
                       "growth": growth(self.baseline, after + [self.end], "rss_mb")},
            "fds": {"baseline": self.baseline.get("fds"), "end": self.end.get("fds"),
                    "kinds_baseline": self.baseline.get("fd_kinds"),
                    "kinds_end": self.end.get("fd_kinds")},
            "threads": {"baseline": self.baseline.get("threads"),
                        "end": self.end.get("threads")},
            "machine_load": {"min": min((s["load"] for s in self.samples), default=None),
                             "mean": round(sum(s["load"] for s in self.samples) /
                                           max(1, len(self.samples)), 2),
                             "max": max((s["load"] for s in self.samples), default=None)},
            "slots_busy_end": self.end.get("slots_busy"), "queue_end": self.end.get("queue"),
            "exit_status": self.exit_status, "traceback_in_log": self.traceback_in_log,
        }


def percentile(values: list[float], q: float) -> float | None:
    """Of sorted ``values``: the nearest rank."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def process_sample(pid: int) -> dict[str, Any]:
    """Resident memory, threads, and descriptors: their count and how many of each kind
    (socket, pipe, anon_inode:..., or a file's path)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    fds = os.listdir(f"/proc/{pid}/fd")
    kinds: dict[str, int] = {}
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            target = "closed meanwhile"
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(fds), "fd_kinds": kinds}


async def settled_sample(pid: int, baseline: dict[str, Any], wait: float) -> dict[str, Any]:
    """The process once its descriptors and threads are back to ``baseline``, or after ``wait``
    seconds (the fewest seen): a connection a client closed a moment ago may still be open on
    the server's side until its event loop reads the EOF."""
    best = process_sample(pid)
    deadline = time.monotonic() + wait
    while (best["fds"] > baseline.get("fds", 0) or best["threads"] > baseline.get("threads", 0)) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = process_sample(pid)
        if (now["fds"], now["threads"]) < (best["fds"], best["threads"]):
            best = now
    return best


class Server:
    """``llamaserver`` on 127.0.0.1 in a child process."""

    def __init__(self, config: Config, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "w")
        argv = [sys.executable, "-m", "llamaserver", "--host", "127.0.0.1", "--port", "0",
                "-np", str(config.parallel), "-c", str(config.ctx_size), "--embedding",
                "--metrics", "--no-webui", *config.server_args]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("llamaserver listening on http://127.0.0.1:"):
            raise RuntimeError(f"the server did not start: {line!r}; see {log}")
        self.url = line.split()[-1]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server never became healthy")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Soak:
    def __init__(self, config: Config, server: Server) -> None:
        self.config = config
        self.server = server
        self.report = Report(asdict(config))
        self.rng = random.Random(config.seed)
        self.greedy = greedy_requests()
        self.expected: dict[str, Answer] = {}
        self.end_at = 0.0
        self.slots: list[dict[str, Any]] = []        # the latest /slots
        self.pending_cuts: dict[str, tuple[float, str]] = {}  # nonce -> (when it left, where)

    # ---- one request -----------------------------------------------------------------------
    async def answer(self, client: httpx.AsyncClient, request: Request,
                     cut_after: int | None = None) -> Answer | None:
        """Send ``request`` and read its answer (``cut_after`` data lines: leave there)."""
        if not request.stream:
            response = await client.post(request.path, json=request.body)
            if response.status_code != 200:
                raise HttpError(response.status_code, response.text)
            return json_answer(request, response.json())
        lines: list[str] = []
        async with client.stream("POST", request.path, json=request.body) as response:
            if response.status_code != 200:
                raise HttpError(response.status_code, (await response.aread()).decode())
            async for line in response.aiter_lines():
                lines.append(line)
                if cut_after is not None and sum(1 for x in lines if x) >= cut_after:
                    return None  # leaving closes the connection
        payloads = sse_payloads(lines)
        return completion_answer(payloads) if request.path == "/completion" \
            else chat_stream_answer(payloads)

    async def one(self, client: httpx.AsyncClient) -> None:
        rng = self.rng
        if rng.random() < self.config.disconnect:
            await self.one_cut(client)
            return
        request = rng.choice(self.greedy) if rng.random() < 0.7 else sampled_request(rng)
        try:
            value = await self.answer(client, request)
        except Exception as exc:
            self.failed(request, exc)
            return
        if request.greedy:
            alone = self.expected[request.key]
            differs = alone.parts_from(value)
            if differs is not None:
                self.report.garbled.append(f"{request.kind}: {differs}: {str(value.value)[:120]!r}"
                                           f" vs alone {str(alone.value)[:120]!r}")
                return
            if not same(alone.value, value.value):
                self.report.near_ties += 1
        self.report.completed += 1

    def failed(self, request: Request, exc: BaseException) -> None:
        report = self.report
        if isinstance(exc, HttpError):
            kind = f"HTTP {exc.status}"
            report.errors[kind] = report.errors.get(kind, 0) + 1
        elif isinstance(exc, Garbled):
            report.garbled.append(f"{request.kind}: {exc}")
        else:  # no answer (connection lost, a timeout, a broken body)
            report.lost.append(f"{request.kind}: {type(exc).__name__}: {exc}")

    async def one_cut(self, client: httpx.AsyncClient) -> None:
        rng = self.rng
        point = rng.choice(CUT_POINTS)
        nonce = f"soak-{rng.randrange(1 << 40):010x}"
        request = cut_request(rng, nonce, point)
        if point == "generation":
            work = self.answer(client, request, cut_after=rng.randint(2, 12))
        else:
            work = self.answer(client, request)
        task = asyncio.ensure_future(work)
        if point == "prompt":  # once a slot has it, during its (long) prompt
            deadline = time.monotonic() + 120
            while not task.done() and self.where(nonce) == "queue" and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S / 2)
        delay = {"queue": rng.uniform(0.0, 0.05), "prompt": rng.uniform(0.0, 0.05)}.get(point)
        done, _ = await asyncio.wait([task], timeout=delay)
        if not done:
            task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        if not done or outcome is None:  # the client left: when does its slot let go?
            where = self.where(nonce)
            self.pending_cuts[nonce] = (time.monotonic(), where)
            self.report.cut[where] = self.report.cut.get(where, 0) + 1
        elif isinstance(outcome, BaseException):
            self.failed(request, outcome)
        else:
            self.report.completed += 1  # it ended before its client could leave

    def where(self, nonce: str) -> str:
        for slot in self.slots:
            if slot.get("is_processing") and nonce in slot.get("prompt", ""):
                decoded = slot.get("next_token", {}).get("n_decoded", 0)
                return "generation" if decoded else "prompt"
        return "queue"

    # ---- the watchers ----------------------------------------------------------------------
    async def watch_slots(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                response = await client.get("/slots")
                self.slots = response.json()
            except (httpx.HTTPError, ValueError):
                await asyncio.sleep(POLL_S)
                continue
            seen = " ".join(s.get("prompt", "") for s in self.slots if s.get("is_processing"))
            now = time.monotonic()
            for nonce, (left, where) in list(self.pending_cuts.items()):
                if left < t0 and nonce not in seen:  # this poll began after the client left
                    self.report.cut_to_idle_ms.setdefault(where, []).append(
                        round((now - left) * 1000.0, 1))
                    del self.pending_cuts[nonce]
            await asyncio.sleep(POLL_S)

    async def watch_process(self, stop: asyncio.Event, t_start: float) -> None:
        while not stop.is_set():
            self.report.samples.append({"t": round(time.monotonic() - t_start, 1),
                                        "load": os.getloadavg()[0],
                                        **process_sample(self.server.proc.pid)})
            await asyncio.sleep(self.config.sample_every)

    # ---- the run ---------------------------------------------------------------------------
    async def references(self, client: httpx.AsyncClient) -> None:
        """Each greedy request alone: the answer it must give under load too."""
        for request in self.greedy:
            self.expected[request.key] = await self.answer(client, request)

    async def clients(self, until: float) -> None:
        async def loop() -> None:
            async with new_client(self.server.url) as client:
                while time.monotonic() < until:
                    await self.one(client)
        await asyncio.gather(*(loop() for _ in range(self.config.clients)))

    async def run(self) -> Report:
        c, report = self.config, self.report
        t_start = time.monotonic()
        stop = asyncio.Event()
        async with new_client(self.server.url) as client:
            await self.references(client)
            watchers = [asyncio.ensure_future(self.watch_slots(client, stop)),
                        asyncio.ensure_future(self.watch_process(stop, t_start))]
            load_end = time.monotonic() + c.duration
            await self.clients(time.monotonic() + min(c.warmup, c.duration))
            await asyncio.sleep(1.0)
            report.baseline = {"t": round(time.monotonic() - t_start, 1),
                               **process_sample(self.server.proc.pid)}
            await self.clients(load_end)
            settle = time.monotonic() + 10
            while self.pending_cuts and time.monotonic() < settle:
                await asyncio.sleep(0.1)
            for nonce in self.pending_cuts:
                report.lost.append(f"slot still serving {nonce} 10 s after its client left")
            stop.set()
            await asyncio.gather(*watchers)
            await asyncio.sleep(1.0)
            metrics = (await client.get("/metrics")).text
            slots = (await client.get("/slots")).json()
        report.end = {**await settled_sample(self.server.proc.pid, report.baseline, 10.0),
                      "slots_busy": sum(1 for s in slots if s["is_processing"]),
                      "queue": metric(metrics, "llamacpp:requests_deferred")}
        return report


def growth(baseline: dict[str, Any], samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if key in s]
    if key not in baseline or not values:
        return None
    return round(max(values) - baseline[key], 1)


class HttpError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


def new_client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300.0),
                             limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def run(config: Config, log: Path | None = None) -> Report:
    server = Server(config, log or REPO / "bench" / ".soak-server.log")
    try:
        report = asyncio.run(Soak(config, server).run())
    finally:
        status = server.stop()
    report.exit_status = status
    report.traceback_in_log = "Traceback" in server.log_path.read_text()
    return report


def main() -> None:
    """Flags from ``Config``'s fields (``--sample-every`` for ``sample_every``); anything else
    goes to the server's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(Config):
        if f.name != "server_args":
            parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                                default=f.default)
    parser.add_argument("--json", type=Path, help="write the whole report here")
    args, server_args = parser.parse_known_args()
    config = Config(**{f.name: getattr(args, f.name) for f in fields(Config)
                       if f.name != "server_args"}, server_args=server_args)
    t0 = time.monotonic()
    report = run(config)
    summary = report.summary()
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    summary["load_1m"] = os.getloadavg()[0]
    print(json.dumps(summary, indent=2))
    for problem in (report.lost + report.garbled)[:20]:
        print("  ", problem)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
