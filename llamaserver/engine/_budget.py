"""``BudgetTracker``: a span of the output limited to a number of tokens (a thinking budget).

The span opens with ``start`` (or at once when ``start`` is None) and closes with ``end``.
Once ``n`` tokens were generated inside it, the tracker hands out the request's ``forced``
tokens (a closing message and the end marker) one per step, in place of sampling.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import TokenBudget

__all__ = ["BudgetTracker"]

_WAITING, _INSIDE, _FORCING, _DONE = range(4)


class BudgetTracker:
    __slots__ = ("_budget", "_state", "_count", "_text", "_forced")

    def __init__(self, budget: TokenBudget) -> None:
        self._budget = budget
        self._state = _WAITING
        self._count = 0
        self._text = ""        # recent output, enough to find a marker split over pieces
        self._forced: deque[int] = deque()
        if not budget.start:
            self._open()

    def next_forced(self) -> int:
        """The token to write instead of sampling, or -1 to sample."""
        forced = self._forced
        if not forced:
            return -1
        tok = forced.popleft()
        if not forced:
            self._state = _DONE
        return tok

    def on_token(self, piece: str) -> None:
        """Account for one generated token whose text is ``piece``."""
        state = self._state
        if state in (_DONE, _FORCING):
            return
        budget = self._budget
        marker = budget.start if state == _WAITING else budget.end
        assert marker is not None
        text = self._text + piece
        at = text.find(marker)
        if at >= 0:
            self._text = text[at + len(marker):][-len(budget.end):]
            if state == _WAITING:
                self._open()
            else:
                self._state = _DONE
            return
        self._text = text[-len(marker):]
        if state == _INSIDE:
            self._count += 1
            if self._count >= budget.n:
                self._force()

    def _open(self) -> None:
        """The span begins; a budget of 0 tokens closes it before anything is sampled."""
        self._state, self._count = _INSIDE, 0
        if self._budget.n <= 0:
            self._force()

    def _force(self) -> None:
        self._state = _FORCING
        self._forced.extend(self._budget.forced)
        if not self._forced:
            self._state = _DONE
