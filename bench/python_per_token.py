"""Python time per generated token in the engine (outside llama_decode and libllama's samplers),
this checkout against another one, side by side in one run.

    git worktree add /tmp/base 6194928          # the code to compare with
    cp -r llama_ffi/_native llama_ffi/_llama_cffi*.so /tmp/base/llama_ffi/
    python bench/python_per_token.py --baseline /tmp/base --rounds 6

Each round starts each checkout's ``llamaserver`` in turn (the order flips every round, so
that drift of the machine hits both), sends ``--requests`` streamed completions per level,
and reads the engine's own counters from /metrics: generation-only step time minus decode
and sampling, divided by the tokens generated.  Medians over the rounds, with every round's
value, because on a shared 2-core machine one round may differ from the next by half.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
COUNTERS = ("engine_gen_step_seconds", "engine_gen_decode_seconds", "engine_gen_sample_seconds",
            "tokens_predicted")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counters(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for name in COUNTERS:
        match = re.search(rf"^llamacpp:{name}(?:_total)?\s+([0-9.eE+-]+)", text, re.M)
        if match is None:
            raise SystemExit(f"{url}/metrics has no {name}")
        out[name] = float(match.group(1))
    return out


async def load(url: str, clients: int, requests: int, n_predict: int) -> None:
    body = {"prompt": "Tell me a story about", "n_predict": n_predict, "ignore_eos": True,
            "temperature": 0, "stream": True, "cache_prompt": False}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        async def one_client(n: int) -> None:
            for _ in range(n):
                async with client.stream("POST", "/completion", json=body) as response:
                    async for _ in response.aiter_lines():
                        pass
        await asyncio.gather(*(one_client(max(1, requests // clients)) for _ in range(clients)))


def measure(root: Path, levels: list[int], args: argparse.Namespace) -> dict[int, float]:
    """µs of Python per generated token at each level, for the checkout at ``root``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(root))
    server = subprocess.Popen(
        [sys.executable, "-m", "llamaserver", "-np", "16", "-c", "8192", "-t", str(args.threads),
         "--metrics", "--port", str(port)], cwd="/", env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        asyncio.run(load(url, 2, 2, args.n_predict))  # warm caches and allocators
        out = {}
        for clients in levels:
            before = counters(url)
            asyncio.run(load(url, clients, args.requests, args.n_predict))
            after = counters(url)
            d = {k: after[k] - before[k] for k in COUNTERS}
            python = (d["engine_gen_step_seconds"] - d["engine_gen_decode_seconds"]
                      - d["engine_gen_sample_seconds"])
            out[clients] = python / max(1.0, d["tokens_predicted"]) * 1e6
        return out
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="another checkout with its native library staged")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--requests", type=int, default=24, help="requests per level and round")
    parser.add_argument("--n-predict", type=int, default=48)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    roots = {"this": REPO, "baseline": args.baseline.resolve()}
    results: dict[str, dict[int, list[float]]] = {name: {c: [] for c in levels} for name in roots}
    for round_ in range(args.rounds):
        order = list(roots) if round_ % 2 == 0 else list(roots)[::-1]
        for name in order:
            for clients, value in measure(roots[name], levels, args).items():
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
