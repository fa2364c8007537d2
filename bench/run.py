"""Compare llamaserver with upstream llama-server (and optionally llama-cpp-python) on one model.

    python bench/run.py                       # full comparison, writes bench/RESULTS.md
    python bench/run.py --quick               # one repeat, fewer requests

Each server runs alone, on the same model, context, slots and threads; the servers take turns
(A B A B ...) so that drift of the machine hits both. Numbers are medians over the repeats,
with the spread (min-max) beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import scenario_bench  # noqa: E402
from load import run_load  # noqa: E402
from servers import Running, ServerSpec, llama_cpp_python, ours, upstream  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def default_model() -> str:
    from llama_ffi import default_model_path
    return str(default_model_path())


def eog_tokens(model: str) -> tuple[int, ...]:
    from llama_ffi import Model
    with Model(model, vocab_only=True) as vocab_model:
        return tuple(vocab_model.vocab.eog_tokens)


def step_counters(url: str) -> tuple[float, float, float] | None:
    """(step, decode, sampling) seconds of generation-only steps, from our /metrics."""
    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = []
    for name in ("step", "decode", "sample"):
        m = re.search(rf"^llamacpp:engine_gen_{name}_seconds_total\s+([0-9.eE+-]+)", text, re.M)
        if not m:
            return None
        found.append(float(m.group(1)))
    return tuple(found)


@dataclasses.dataclass
class Side:
    """One server under test: kept running for the whole comparison, and what was measured."""

    spec: ServerSpec
    ban: tuple[int, ...] = ()    # end-of-generation tokens, for servers without ignore_eos
    running: Running | None = None
    startup_s: list[float] = dataclasses.field(default_factory=list)
    idle_rss: int = 0
    peak_rss: int = 0
    levels: dict[int, list] = dataclasses.field(default_factory=dict)          # LoadResult per repeat
    shares: dict[int, list] = dataclasses.field(default_factory=dict)          # (with, without samplers)
    thread_cpu: dict[int, list] = dataclasses.field(default_factory=dict)      # {thread: ms/token}

    @property
    def name(self) -> str:
        return self.spec.name

    def measure(self, level: int, per_client: int, n_predict: int) -> float:
        server = self.running
        before, cpu_before = step_counters(server.url), server.thread_cpu()
        result = asyncio.run(run_load(server.url, level, per_client, n_predict, server.rss,
                                      protocol=self.spec.protocol, ban=self.ban))
        after, cpu_after = step_counters(server.url), server.thread_cpu()
        self.levels.setdefault(level, []).append(result)
        self.peak_rss = max(self.peak_rss, result.peak_rss)
        tokens = sum(r.tokens for r in result.results if r.ok) or 1
        self.thread_cpu.setdefault(level, []).append(
            {name: 1000.0 * (cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)) / tokens
             for name in cpu_after})
        if before and after and after[0] > before[0]:
            step, decode, sample = (a - b for a, b in zip(after, before))
            self.shares.setdefault(level, []).append(((step - decode) / step,
                                                      (step - decode - sample) / step))
        return result.tokens_per_s


def alternate(items: list, k: int) -> list:
    return items if k % 2 == 0 else items[::-1]


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    xs = [x for x in xs if x == x]
    return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--levels", default="1,4,8,16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--startups", type=int, default=3, help="start-up measurements per server")
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--n-predict", type=int, default=48)
    p.add_argument("--ctx-size", type=int, default=8192)
    p.add_argument("--parallel", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--with-llama-cpp-python", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--scenario-repeats", type=int, default=2,
                   help="repeats of the multi-turn and input-grounded scenarios (0: skip them)")
    p.add_argument("--only-scenarios", action="store_true",
                   help="skip the plain load levels; run only the scenarios")
    p.add_argument("--output", default=str(HERE / "RESULTS.md"))
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.requests_per_client, args.startups = 1, 2, 1
        args.scenario_repeats = min(args.scenario_repeats, 1)
    if args.only_scenarios:
        args.repeats = args.startups = 0
        levels_arg = ""
    else:
        levels_arg = args.levels
    model = args.model or default_model()
    levels = [int(x) for x in levels_arg.split(",") if x]
    specs = [ours(model, args.ctx_size, args.parallel, args.threads),
             upstream(model, args.ctx_size, args.parallel, args.threads)]
    if args.with_llama_cpp_python:
        subprocess.run([sys.executable, str(HERE / "lcp_install.py")], check=True)
        specs.append(llama_cpp_python(model, args.ctx_size, args.parallel, args.threads))

    ban = eog_tokens(model)
    sides = [Side(spec, ban=ban) for spec in specs]
    # Start-up first, each server alone on the machine, in turns.
    for k in range(args.startups):
        for side in alternate(sides, k):
            with Running(side.spec) as server:
                side.startup_s.append(server.startup_s)
    # Then all servers stay up (idle ones sleep) and take turns at each level, the order
    # flipping every time, so that drift of this shared machine hits them alike and each
    # repeat gives a paired ratio.
    with contextlib.ExitStack() as stack:
        for side in sides if levels else ():
            side.running = stack.enter_context(Running(side.spec))
            asyncio.run(run_load(side.running.url, 1, 2, args.n_predict, protocol=side.spec.protocol,
                                 ban=side.ban))  # warm caches and allocators
            side.idle_rss = side.running.rss()
        turn = 0
        for rep in range(args.repeats):
            for level in levels:
                line = []
                for side in alternate(sides, turn):
                    tps = side.measure(level, args.requests_per_client, args.n_predict)
                    line.append(f"{side.name} {tps:.1f}")
                turn += 1
                print(f"[repeat {rep + 1}/{args.repeats}] {level} clients: " + ", ".join(line),
                      file=sys.stderr, flush=True)
    report = render(args, model, levels, {side.name: side for side in sides})
    if args.scenario_repeats > 0:
        multi = scenario_bench.measure_multi_turn(model, args.threads, args.scenario_repeats)
        grounded = scenario_bench.measure_grounded(model, args.threads, args.scenario_repeats)
        report += "\n".join(scenario_bench.render(multi, grounded, args.scenario_repeats)) + "\n"
    findings = HERE / "FINDINGS.md"
    if findings.exists() and pathlib.Path(args.output).resolve() == (HERE / "RESULTS.md").resolve():
        report += "\n" + findings.read_text()
    pathlib.Path(args.output).write_text(report)
    print(report)
    return 0


def paired_ratios(a: Side, b: Side, level: int) -> list[float]:
    """a/b throughput, repeat by repeat (the two ran back to back)."""
    return [x.tokens_per_s / y.tokens_per_s
            for x, y in zip(a.levels[level], b.levels[level]) if y.tokens_per_s]


def render(args, model, levels, sides: dict[str, Side]) -> str:
    ours_name, ref = "llamaserver", "llama-server"
    lines = [
        "# Benchmark: llamaserver vs upstream llama-server",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- cpu: {cpu_name()}",
        f"- model: {pathlib.Path(model).name}; ctx {args.ctx_size}, {args.parallel} slots, "
        f"{args.threads} threads, n_predict {args.n_predict}, ignore_eos, temperature 0, streaming /completion",
        f"- {args.repeats} repeats; all servers up at once, taking turns at each level in alternating "
        f"order; {args.requests_per_client} requests per client per turn",
        f"- command: `python bench/run.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "## Throughput and latency (median [min-max] over repeats)",
        "",
        "| clients | server | tokens/s | TTFT p50 ms | TTFT p95 ms | completed | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        for name, side in sides.items():
            rs = side.levels[level]
            tps = [r.tokens_per_s for r in rs]
            p50 = [r.ttft(0.5) * 1000 for r in rs]
            p95 = [r.ttft(0.95) * 1000 for r in rs]
            lo, hi = spread(tps)
            lines.append(f"| {level} | {name} | {med(tps):.1f} [{lo:.1f}-{hi:.1f}] | {med(p50):.0f} | "
                         f"{med(p95):.0f} | {sum(r.completed for r in rs)} | {sum(r.errors for r in rs)} |")
    lines += ["", "## Memory and start-up", "",
              "| server | RSS idle MB | RSS peak under load MB | start to healthy s (median [min-max]) |",
              "|---|---|---|---|"]
    for name, side in sides.items():
        lo, hi = spread(side.startup_s)
        lines.append(f"| {name} | {side.idle_rss / 2**20:.0f} | {side.peak_rss / 2**20:.0f} | "
                     f"{med(side.startup_s):.2f} [{lo:.2f}-{hi:.2f}] |")
    if ours_name in sides and ref in sides:
        a_side, b_side = sides[ours_name], sides[ref]
        lines += ["", "## Targets", "",
                  "Throughput is judged on the median of the paired ratios (each repeat's two runs at a",
                  "level were back to back); the ratio of the medians is shown beside it.", "",
                  "| target | measured | met |", "|---|---|---|"]
        for level in levels:
            ratios = paired_ratios(a_side, b_side, level)
            ratio = med(ratios)
            lo, hi = spread(ratios)
            of_medians = (med([r.tokens_per_s for r in a_side.levels[level]])
                          / med([r.tokens_per_s for r in b_side.levels[level]]))
            lines.append(f"| throughput >= 0.95 x upstream at {level} clients | {ratio:.3f} "
                         f"[{lo:.3f}-{hi:.3f}]; of medians {of_medians:.3f} | {'yes' if ratio >= 0.95 else 'NO'} |")
        for level in levels:
            a = med([r.ttft(0.5) for r in a_side.levels[level]]) * 1000
            b = med([r.ttft(0.5) for r in b_side.levels[level]]) * 1000
            lines.append(f"| TTFT p50 <= 1.1 x upstream + 20 ms at {level} clients | {a:.0f} vs {1.1 * b + 20:.0f} ms | {'yes' if a <= 1.1 * b + 20 else 'NO'} |")
        a, b = a_side.peak_rss / 2**20, b_side.peak_rss / 2**20
        lines.append(f"| RSS <= upstream + 150 MB | {a:.0f} vs {b + 150:.0f} MB | {'yes' if a <= b + 150 else 'NO'} |")
        a, b = med(a_side.startup_s), med(b_side.startup_s)
        lines.append(f"| start-up <= upstream + 1.5 s | {a:.2f} vs {b + 1.5:.2f} s | {'yes' if a <= b + 1.5 else 'NO'} |")
        for index, label in ((0, "engine time outside llama_decode"),
                             (1, "Python alone (outside decode and libllama's samplers)")):
            for level in levels:
                shares = [pair[index] for pair in a_side.shares.get(level, [])]
                if shares:
                    share = med(shares) * 100
                    lines.append(f"| {label} < 3% of a generation step at {level} clients | "
                                 f"{share:.2f}% | {'yes' if share < 3 else 'NO'} |")
    lines += ["", "## CPU per generated token, by thread (ms, median over repeats)", "",
              "Each server has 2 compute threads on this 2-core machine; CPU spent by any other",
              "thread is taken from the decode.", "",
              "| clients | server | threads (ms CPU per token) | total |", "|---|---|---|---|"]
    for level in levels:
        for name, side in sides.items():
            per: dict[str, list[float]] = {}
            for run in side.thread_cpu.get(level, []):
                for thread, ms in run.items():
                    per.setdefault(thread, []).append(ms)
            meds = {t: med(v) for t, v in per.items()}
            shown = ", ".join(f"{t} {v:.2f}" for t, v in sorted(meds.items(), key=lambda kv: -kv[1]) if v >= 0.05)
            lines.append(f"| {level} | {name} | {shown} | {sum(meds.values()):.2f} |")
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
