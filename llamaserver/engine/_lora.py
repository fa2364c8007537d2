"""``LoraTurns``: which LoRA scales a step runs with.

A context applies one set of adapter scales to a whole batch, so requests with other scales
wait for steps of their own, taking turns of a few steps each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_ffi import Context, LoraAdapter

__all__ = ["LoraTurns"]

_TURN_STEPS = 8  # steps one set of scales may keep the context while others wait

Scales = tuple[float, ...]


class LoraTurns:
    def __init__(self, ctx: Context, adapters: Sequence[LoraAdapter],
                 server_scales: Callable[[], Scales]) -> None:
        self._ctx = ctx
        self.adapters = list(adapters)
        self.server_scales = server_scales  # the server-wide scales as they are now
        self.applied: Scales = (0.0,) * len(self.adapters)
        self._streak = 0

    def __bool__(self) -> bool:
        return bool(self.adapters)

    def choose(self, wanted: Iterable[Scales], exclude: set[Scales]) -> Scales:
        """The scales of this step: the applied ones while they have work, for a while."""
        configs: list[Scales] = []
        for scales in wanted:
            if scales not in configs and scales not in exclude:
                configs.append(scales)
        applied = self.applied
        if len(configs) <= 1:
            self._streak = 0
            return configs[0] if configs else applied
        if applied in configs and self._streak < _TURN_STEPS:
            self._streak += 1
            return applied
        self._streak = 0
        if applied in configs:
            return configs[(configs.index(applied) + 1) % len(configs)]
        return configs[0]

    def apply(self, scales: Scales) -> None:
        if scales != self.applied:
            self._ctx.set_loras({a: s for a, s in zip(self.adapters, scales) if s})
            self.applied = scales
