"""Runs the scenarios of ``scenarios.py`` against our server and upstream's, and writes their
tables and targets (a section of bench/RESULTS.md).

Every multi-turn run starts a fresh server (an empty cache); the servers take turns, the
order flipping each repeat.  Both get the same model, context, slots and threads, and
upstream its prompt cache (`--cache-ram`, its default) and, for input-grounded generation,
each of its n-gram speculation modes (the best one is the reference).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys

from scenarios import Run, run_grounded, run_multi_turn
from servers import Running, ServerSpec, ours, upstream

CTX = 16384
SLOTS = 4
UPSTREAM_NGRAM = ("ngram-simple", "ngram-map-k", "ngram-mod")


def _with(spec: ServerSpec, name: str, *extra: str) -> ServerSpec:
    return dataclasses.replace(spec, name=name, argv=[*spec.argv, *extra])


def _med(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _warm(server: Running) -> None:
    run_grounded(server.url, 1, None)  # loads pages, allocators, the first graphs


def measure_multi_turn(model: str, threads: int, repeats: int) -> dict[str, list[Run]]:
    specs = [ours(model, CTX, SLOTS, threads),
             _with(upstream(model, CTX, SLOTS, threads), "llama-server", "--cache-ram", "8192")]
    runs: dict[str, list[Run]] = {s.name: [] for s in specs}
    for rep in range(repeats):
        for spec in (specs if rep % 2 == 0 else specs[::-1]):
            with Running(spec) as server:
                run = run_multi_turn(server.url)
            runs[spec.name].append(run)
            _log(f"[multi-turn {rep + 1}/{repeats}] {spec.name}: {run.tokens_per_s:.1f} tok/s, "
                 f"TTFT p50 {run.ttft_p50_ms:.0f} ms, prompt tokens evaluated {run.prompt_n}")
    return runs


def measure_grounded(model: str, threads: int, repeats: int,
                     levels: tuple[int, ...] = (1, 4)) -> dict[tuple[str, int], list[Run]]:
    base_ours = ours(model, CTX, SLOTS, threads)
    base_up = upstream(model, CTX, SLOTS, threads)
    # (label, server spec, the request's `speculative` field)
    configs = [("llamaserver ngram", _with(base_ours, "llamaserver", "--spec-type",
                                           "ngram-simple"), True),
               ("llamaserver no speculation", None, False),
               ("llama-server no speculation", base_up, None)]
    configs += [(f"llama-server {mode}", _with(base_up, "llama-server", "--spec-type", mode),
                 None) for mode in UPSTREAM_NGRAM]
    runs: dict[tuple[str, int], list[Run]] = {}
    for rep in range(repeats):
        order = configs if rep % 2 == 0 else configs[::-1]
        server_of: dict[str, Running] = {}
        try:
            for label, spec, _ in order:
                if spec is not None:
                    server_of[label] = Running(spec)
                    _warm(server_of[label])
            ours_server = server_of["llamaserver ngram"]
            for label, spec, speculative in order:
                server = server_of[label] if spec is not None else ours_server
                for level in levels:
                    run = run_grounded(server.url, level, speculative)
                    runs.setdefault((label, level), []).append(run)
                    _log(f"[grounded {rep + 1}/{repeats}] {label}, {level} clients: "
                         f"{run.tokens_per_s:.1f} tok/s, acceptance {run.acceptance:.2f}")
        finally:
            for server in server_of.values():
                server.stop()
    return runs


def render(multi: dict[str, list[Run]], grounded: dict[tuple[str, int], list[Run]],
           repeats: int) -> list[str]:
    lines = ["", "## Prompt cache: multi-turn chat (median over repeats)", "",
             "16 users share a ~1,500-token system prompt, 3 turns each (32 tokens per answer, "
             "streamed chat completions); 4 clients, 4 slots, ctx 16384; a fresh server per run.",
             "", "| server | tokens/s | TTFT p50 ms | prompt tokens evaluated | errors |",
             "|---|---|---|---|---|"]
    for name, runs in multi.items():
        lines.append(f"| {name} | {_med([r.tokens_per_s for r in runs]):.1f} | "
                     f"{_med([r.ttft_p50_ms for r in runs]):.0f} | "
                     f"{_med([r.prompt_n for r in runs]):.0f} | {sum(r.errors for r in runs)} |")
    lines += ["", "## Speculative decoding: input-grounded generation (median over repeats)", "",
              "Repeat a ~300-token text (160 tokens, greedy, ignore_eos); 2 requests per client.",
              "", "| server | clients | tokens/s | draft acceptance | errors |",
              "|---|---|---|---|---|"]
    for (label, level), runs in sorted(grounded.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {label} | {level} | {_med([r.tokens_per_s for r in runs]):.1f} | "
                     f"{_med([r.acceptance for r in runs]):.2f} | "
                     f"{sum(r.errors for r in runs)} |")
    lines += ["", "## Targets of the new scenarios", "", "| target | measured | met |",
              "|---|---|---|"]
    if "llamaserver" in multi and "llama-server" in multi:
        a, b = multi["llamaserver"], multi["llama-server"]
        ttft = _med([r.ttft_p50_ms for r in a]) / _med([r.ttft_p50_ms for r in b])
        tps = _med([r.tokens_per_s for r in a]) / _med([r.tokens_per_s for r in b])
        lines.append(f"| multi-turn TTFT p50 <= 0.5 x upstream | {ttft:.2f} | "
                     f"{'yes' if ttft <= 0.5 else 'NO'} |")
        lines.append(f"| multi-turn throughput >= 1.1 x upstream | {tps:.2f} | "
                     f"{'yes' if tps >= 1.1 else 'NO'} |")

    def tps(label: str, level: int) -> float:
        return _med([r.tokens_per_s for r in grounded.get((label, level), [])])

    if grounded:
        gain = tps("llamaserver ngram", 1) / tps("llamaserver no speculation", 1)
        lines.append(f"| grounded, 1 client: ngram >= 1.5 x ours without | {gain:.2f} | "
                     f"{'yes' if gain >= 1.5 else 'NO'} |")
        for level in sorted({level for _, level in grounded}):
            best_mode = max(UPSTREAM_NGRAM, key=lambda m: tps(f"llama-server {m}", level))
            best = tps(f"llama-server {best_mode}", level)
            ratio = tps("llamaserver ngram", level) / best
            lines.append(f"| grounded, {level} clients: >= upstream's best n-gram mode "
                         f"({best_mode}) | {ratio:.2f} | {'yes' if ratio >= 1.0 else 'NO'} |")
    return lines
