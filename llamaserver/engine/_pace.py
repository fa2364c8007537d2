"""``StepPace``: how many prompt tokens one step may decode.

A step is the unit of everything else the worker does: a request whose client went away is
let go of at the next step, and every generating slot waits for the step to end to get its
next token.  A long prompt decoded in one step (up to ``n_batch`` tokens) made both wait for
seconds on a CPU: the soak measured 10-20 s from a disconnect during prompt processing to the
slot being free.  So prompts are fed in chunks that take about ``STEP_S`` at the decode rate
measured on recent steps (all of ``n_batch`` on a fast device).  On a CPU, where the
quantized matrix products run row by row, chunks of 64 to 1,024 tokens decode at the same
rate (measured: 88-139 tokens/s on one loaded core), so little is lost.
"""

from __future__ import annotations

__all__ = ["StepPace"]

STEP_S = 0.1
MIN_CHUNK = 64      # smaller chunks decode measurably slower
_WEIGHT = 0.3       # of the latest step in the rate


class StepPace:
    def __init__(self, n_batch: int) -> None:
        self.n_batch = n_batch
        self.rate = 0.0  # tokens decoded per second, recent (0: not measured yet)

    def prompt_budget(self) -> int:
        """Prompt tokens the next step may take (before the generating slots' own)."""
        if self.rate <= 0.0:
            return self.n_batch
        return max(MIN_CHUNK, min(self.n_batch, int(self.rate * STEP_S)))

    def on_decode(self, n_tokens: int, n_prompt: int, seconds: float) -> None:
        """A decode of ``n_tokens`` (``n_prompt`` of them prompt tokens) took ``seconds``."""
        if n_prompt < MIN_CHUNK or seconds <= 0.0:
            return  # only steps with a chunk of prompt say how fast a chunk goes
        rate = n_tokens / seconds
        self.rate = rate if self.rate <= 0.0 else (1 - _WEIGHT) * self.rate + _WEIGHT * rate
