"""Python time per generated token in the engine (outside llama_decode and libllama's samplers),
this checkout against another one, side by side in one run.

    git worktree add /tmp/base 6194928          # the code to compare with
    cp -r llama_ffi/_native llama_ffi/_llama_cffi*.so /tmp/base/llama_ffi/
    python bench/python_per_token.py --baseline /tmp/base --rounds 6

Each round starts each checkout's ``llamaserver`` in turn (the order flips every round, so
that drift of the machine hits both), runs ``load.py``'s streaming load at each level, and
reads the engine's own counters from /metrics (``run.py``'s ``step_counters``):
generation-step time minus decode and sampling, divided by the tokens generated.  Medians
over the rounds, with every round's value, because on a shared 2-core machine one round may
differ from the next by half.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import run_load  # noqa: E402
from run import default_model, step_counters  # noqa: E402
from servers import Running, ours  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def measure(name: str, root: Path, levels: list[int], args: argparse.Namespace
            ) -> dict[int, float]:
    """µs of Python per generated token at each level, for the checkout at ``root``."""
    spec = dataclasses.replace(ours(args.model, 8192, 16, args.threads), name=f"llamaserver-{name}",
                               env={"PYTHONPATH": str(root)}, cwd="/")
    with Running(spec) as server:
        asyncio.run(run_load(server.url, 2, 1, args.n_predict))  # warm caches and allocators
        out = {}
        for clients in levels:
            before = step_counters(server.url)
            result = asyncio.run(run_load(server.url, clients, max(1, args.requests // clients),
                                          args.n_predict))
            after = step_counters(server.url)
            if before is None or after is None or result.errors:
                raise SystemExit(f"{name}: no engine counters in /metrics, or {result.errors} "
                                 f"failed requests (see bench/.{spec.name}.log)")
            step, decode, sample = (a - b for a, b in zip(after, before))
            tokens = sum(r.tokens for r in result.results)
            out[clients] = (step - decode - sample) / max(1, tokens) * 1e6
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="another checkout with its native library staged")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--requests", type=int, default=24, help="requests per level and round")
    parser.add_argument("--n-predict", type=int, default=48)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    args.model = args.model or default_model()
    levels = [int(x) for x in args.levels.split(",")]
    roots = {"this": REPO, "baseline": args.baseline.resolve()}
    results: dict[str, dict[int, list[float]]] = {name: {c: [] for c in levels} for name in roots}
    for round_ in range(args.rounds):
        for name in list(roots) if round_ % 2 == 0 else list(roots)[::-1]:
            for clients, value in measure(name, roots[name], levels, args).items():
                results[name][clients].append(value)
        print(f"[round {round_ + 1}/{args.rounds}] " + "; ".join(
            f"{name} " + ", ".join(f"{c}: {results[name][c][-1]:.1f}" for c in levels)
            for name in roots), file=sys.stderr, flush=True)
    print("| clients | " + " | ".join(f"{name} µs/token (median [rounds])" for name in roots)
          + " | this / baseline |")
    print("|---|" + "---|" * (len(roots) + 1))
    for clients in levels:
        medians = {name: statistics.median(results[name][clients]) for name in roots}
        cells = [f"{medians[name]:.1f} [{', '.join(f'{v:.0f}' for v in results[name][clients])}]"
                 for name in roots]
        print(f"| {clients} | " + " | ".join(cells)
              + f" | {medians['this'] / medians['baseline']:.2f} |")


if __name__ == "__main__":
    main()
