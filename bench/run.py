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
import datetime
import os
import pathlib
import platform
import re
import statistics
import sys

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from load import run_load  # noqa: E402
from servers import Running, llama_cpp_python, ours, upstream  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def default_model() -> str:
    from llama_ffi import default_model_path
    return str(default_model_path())


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


def one_server_run(spec, levels, per_client, n_predict, warmup):
    with Running(spec) as server:
        idle = server.rss()
        out = {"startup_s": server.startup_s, "idle_rss": idle, "levels": {}, "python_share": {},
               "python_share_without_samplers": {}, "thread_cpu": {}}
        asyncio.run(run_load(server.url, 1, warmup, n_predict))   # warm caches and allocators
        for level in levels:
            before, cpu_before = step_counters(server.url), server.thread_cpu()
            out["levels"][level] = result = asyncio.run(
                run_load(server.url, level, per_client, n_predict, server.rss))
            after, cpu_after = step_counters(server.url), server.thread_cpu()
            tokens = sum(r.tokens for r in result.results if r.ok) or 1
            out["thread_cpu"][level] = {name: 1000.0 * (cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)) / tokens
                                        for name in cpu_after}
            if before and after and after[0] > before[0]:
                step, decode, sample = (a - b for a, b in zip(after, before))
                out["python_share"][level] = (step - decode) / step
                out["python_share_without_samplers"][level] = (step - decode - sample) / step
        out["load_rss"] = max(r.peak_rss for r in out["levels"].values())
    return out


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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--n-predict", type=int, default=48)
    p.add_argument("--ctx-size", type=int, default=8192)
    p.add_argument("--parallel", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--with-llama-cpp-python", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default=str(HERE / "RESULTS.md"))
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.requests_per_client = 1, 2
    model = args.model or default_model()
    levels = [int(x) for x in args.levels.split(",")]
    specs = [ours(model, args.ctx_size, args.parallel, args.threads),
             upstream(model, args.ctx_size, args.parallel, args.threads)]
    if args.with_llama_cpp_python:
        specs.append(llama_cpp_python(model, args.ctx_size, args.parallel, args.threads))

    runs: dict[str, list[dict]] = {s.name: [] for s in specs}
    for rep in range(args.repeats):
        order = specs if rep % 2 == 0 else list(reversed(specs))
        for spec in order:
            print(f"[repeat {rep + 1}/{args.repeats}] {spec.name}", file=sys.stderr, flush=True)
            runs[spec.name].append(one_server_run(spec, levels, args.requests_per_client,
                                                  args.n_predict, warmup=2))
    report = render(args, model, levels, runs)
    findings = HERE / "FINDINGS.md"
    if findings.exists() and pathlib.Path(args.output).resolve() == (HERE / "RESULTS.md").resolve():
        report += "\n" + findings.read_text()
    pathlib.Path(args.output).write_text(report)
    print(report)
    return 0


def render(args, model, levels, runs) -> str:
    names = list(runs)
    ref = "llama-server"
    lines = [
        "# Benchmark: llamaserver vs upstream llama-server",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- cpu: {cpu_name()}",
        f"- model: {pathlib.Path(model).name}; ctx {args.ctx_size}, {args.parallel} slots, "
        f"{args.threads} threads, n_predict {args.n_predict}, ignore_eos, temperature 0, streaming /completion",
        f"- {args.repeats} repeats, servers interleaved; {args.requests_per_client} requests per client per level",
        f"- command: `python bench/run.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "## Throughput and latency (median [min-max] over repeats)",
        "",
        "| clients | server | tokens/s | TTFT p50 ms | TTFT p95 ms | completed | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        for name in names:
            rs = [r["levels"][level] for r in runs[name]]
            tps = [r.tokens_per_s for r in rs]
            p50 = [r.ttft(0.5) * 1000 for r in rs]
            p95 = [r.ttft(0.95) * 1000 for r in rs]
            lo, hi = spread(tps)
            lines.append(f"| {level} | {name} | {med(tps):.1f} [{lo:.1f}-{hi:.1f}] | {med(p50):.0f} | "
                         f"{med(p95):.0f} | {sum(r.completed for r in rs)} | {sum(r.errors for r in rs)} |")
    lines += ["", "## Memory and start-up", "",
              "| server | RSS idle MB | RSS under load MB | start to healthy s |", "|---|---|---|---|"]
    for name in names:
        rs = runs[name]
        lines.append(f"| {name} | {med([r['idle_rss'] for r in rs]) / 2**20:.0f} | "
                     f"{med([r['load_rss'] for r in rs]) / 2**20:.0f} | {med([r['startup_s'] for r in rs]):.2f} |")
    if "llamaserver" in runs and ref in runs:
        lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for level in levels:
            a = med([r["levels"][level].tokens_per_s for r in runs["llamaserver"]])
            b = med([r["levels"][level].tokens_per_s for r in runs[ref]])
            ratio = a / b if b else float("nan")
            lines.append(f"| throughput >= 0.95 x upstream at {level} clients | {ratio:.3f} | {'yes' if ratio >= 0.95 else 'NO'} |")
        for level in levels:
            a = med([r["levels"][level].ttft(0.5) for r in runs["llamaserver"]]) * 1000
            b = med([r["levels"][level].ttft(0.5) for r in runs[ref]]) * 1000
            lines.append(f"| TTFT p50 <= 1.1 x upstream + 20 ms at {level} clients | {a:.0f} vs {1.1 * b + 20:.0f} ms | {'yes' if a <= 1.1 * b + 20 else 'NO'} |")
        a = med([r["load_rss"] for r in runs["llamaserver"]]) / 2**20
        b = med([r["load_rss"] for r in runs[ref]]) / 2**20
        lines.append(f"| RSS <= upstream + 150 MB | {a:.0f} vs {b + 150:.0f} MB | {'yes' if a <= b + 150 else 'NO'} |")
        a = med([r["startup_s"] for r in runs["llamaserver"]])
        b = med([r["startup_s"] for r in runs[ref]])
        lines.append(f"| start-up <= upstream + 1.5 s | {a:.2f} vs {b + 1.5:.2f} s | {'yes' if a <= b + 1.5 else 'NO'} |")
        for key, label in (("python_share", "engine time outside llama_decode"),
                           ("python_share_without_samplers", "Python alone (outside decode and libllama's samplers)")):
            for level in levels:
                shares = [r[key][level] for r in runs["llamaserver"] if level in r[key]]
                if shares:
                    share = med(shares) * 100
                    lines.append(f"| {label} < 3% of a generation step at {level} clients | "
                                 f"{share:.2f}% | {'yes' if share < 3 else 'NO'} |")
    lines += ["", "## CPU per generated token, by thread (ms, median over repeats)", "",
              "Both servers share 2 cores with the 2 compute threads they were given; CPU spent by",
              "any other thread is taken from the decode.", "",
              "| clients | server | threads (ms CPU per token) | total |", "|---|---|---|---|"]
    for level in levels:
        for name in names:
            per = {}
            for r in runs[name]:
                for thread, ms in r["thread_cpu"].get(level, {}).items():
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
