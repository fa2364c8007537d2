"""Prefix-aware routing against Ray Serve's default routing, on the multi-turn chat trace.

    python bench/routing_bench.py                 # needs pip install -e ".[ray]"
    python bench/routing_bench.py --repeats 2 --turns 6

Each run starts ``llamaserver --ray-replicas 2`` (a local Ray cluster: an ingress and two
replicas of the default model, each with its own slots and prompt cache) with
``--ray-routing prefix`` or ``--ray-routing default`` (Ray Serve's power of two choices),
replays the multi-turn trace of ``scenarios.py`` (16 users share a ~1,500-token system
prompt; each holds a conversation of ``--turns`` turns; 4 clients take the next ready turn)
and stops it again, so every run starts with empty caches.  The policies take turns, the
order flipping each repeat.

Measured from each answer's ``timings``: prompt tokens evaluated (``prompt_n``), tokens taken
from the cache (``cache_n``; hit rate = cached / (cached + evaluated)), and time to first
token.  Both replicas share this machine's cores, so throughput says little about routing:
judge by tokens evaluated and hit rate.  Prints the table and writes
``bench/RESULTS-routing.md`` and the routing section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import sys
import time

import llama_ffi
from scenarios import Run, multi_turn
from servers import Running, ServerSpec

HERE = pathlib.Path(__file__).resolve().parent
POLICIES = ("prefix", "default")
SECTION = "## Routing over replicas (Ray Serve)"


def spec(model: str, policy: str, threads: int) -> ServerSpec:
    return ServerSpec(f"llamaserver-ray-{policy}", [
        sys.executable, "-m", "llamaserver", "-m", model, "-c", "16384", "-np", "2",
        "-t", str(threads), "-tb", str(threads), "--ray-replicas", "2",
        "--ray-routing", policy])


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(model: str, repeats: int, turns: int, max_tokens: int,
            threads: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {p: [] for p in POLICIES}
    for rep in range(repeats):
        for policy in (POLICIES if rep % 2 == 0 else POLICIES[::-1]):
            with Running(spec(model, policy, threads), timeout=600) as server:
                run = asyncio.run(multi_turn(server.url, turns=turns, max_tokens=max_tokens))
            runs[policy].append(run)
            print(f"[{rep + 1}/{repeats}] {policy}: prompt tokens evaluated {run.prompt_n}, "
                  f"cache hit rate {run.cache_hit_rate:.2f}, TTFT p50 {run.ttft_ms(0.5):.0f} ms, "
                  f"p95 {run.ttft_ms(0.95):.0f} ms, errors {run.errors}", file=sys.stderr,
                  flush=True)
    return runs


def render(runs: dict[str, list[Run]], turns: int, max_tokens: int, repeats: int) -> list[str]:
    lines = [SECTION, "",
             f"Multi-turn chat over 2 replicas (`llamaserver --ray-replicas 2 -np 2 -c 16384`, "
             f"a local Ray cluster on this 2-core machine): 16 users share a ~1,500-token system "
             f"prompt, {turns} turns each ({max_tokens} tokens per answer, streamed chat "
             f"completions), 4 clients; a fresh cluster per run; median of {repeats} run(s).",
             "", "| routing | prompt tokens evaluated | cache hit rate | TTFT p50 ms | "
             "TTFT p95 ms | errors |", "|---|---|---|---|---|---|"]
    names = {"prefix": "prefix-aware (llamaserver.ray)", "default": "Ray Serve default (pow-2)"}
    for policy, policy_runs in runs.items():
        lines.append(f"| {names[policy]} | {_med([r.prompt_n for r in policy_runs]):.0f} | "
                     f"{_med([r.cache_hit_rate for r in policy_runs]):.2f} | "
                     f"{_med([r.ttft_ms(0.5) for r in policy_runs]):.0f} | "
                     f"{_med([r.ttft_ms(0.95) for r in policy_runs]):.0f} | "
                     f"{sum(r.errors for r in policy_runs)} |")
    ratio = _med([r.prompt_n for r in runs["prefix"]]) / _med([r.prompt_n for r in runs["default"]])
    lines += ["", f"Target: prefix-aware evaluates at most half the prompt tokens of the "
              f"default routing: measured {ratio:.2f} x ({'met' if ratio <= 0.5 else 'NOT met'}).",
              ""]
    return lines


def _replace_section(path: pathlib.Path, lines: list[str]) -> None:
    text = path.read_text() if path.exists() else ""
    head = text.split(SECTION)[0].rstrip("\n")
    path.write_text((head + "\n\n" if head else "") + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="threads per replica")
    p.add_argument("--model", default=str(llama_ffi.default_model_path()))
    args = p.parse_args(argv)
    started = time.perf_counter()
    runs = measure(args.model, args.repeats, args.turns, args.max_tokens, args.threads)
    lines = render(runs, args.turns, args.max_tokens, args.repeats)
    lines.append(f"Measured {time.strftime('%Y-%m-%d')} in {time.perf_counter() - started:.0f} s.")
    print("\n".join(lines))
    (HERE / "RESULTS-routing.md").write_text("# Routing benchmark\n\n" + "\n".join(lines) + "\n")
    _replace_section(HERE / "RESULTS.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
