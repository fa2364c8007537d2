"""Building engines and requests for the engine-level tests, the way the HTTP edge does."""

from __future__ import annotations

from typing import Any

from llama_ffi import SamplerParams
from llamaserver._engine_config import engine_config
from llamaserver.engine import Engine, FinalEvent, GenerationRequest, SystemPrompt, TokenEvent
from llamaserver.settings import ServerSettings

_SAMPLING = ("ignore_eos", "n_probs", "grammar", "logit_bias", "seed")


def make_engine(**settings: Any) -> Engine:
    return Engine(engine_config(ServerSettings(**settings)))


def request(engine: Engine, prompt: str | list[int | str], n_predict: int = 8, *,
            temperature: float = 0.0, system_prompt: str | None = None, stop: Any = (),
            **kw: Any) -> GenerationRequest:
    """A greedy request for ``prompt`` (text, ids or both) as the HTTP layer resolves it."""
    sampling = SamplerParams(temperature=temperature,
                             **{k: kw.pop(k) for k in _SAMPLING if k in kw})
    tokens, bos = engine.vocab.tokenize_prompt(prompt, add_special=True, parse_special=True)
    system = (SystemPrompt.from_text(engine.vocab, system_prompt)
              if system_prompt is not None else None)
    return GenerationRequest(tokens, sampling, n_predict=n_predict, bos_added=bos,
                             system_prompt=system, stop=tuple(stop),
                             prompt_text=prompt if isinstance(prompt, str) else "", **kw)


async def collect(stream) -> tuple[list[TokenEvent], FinalEvent]:  # type: ignore[no-untyped-def]
    events, final = [], None
    async for ev in stream:
        if isinstance(ev, FinalEvent):
            final = ev
        else:
            events.append(ev)
    assert final is not None
    return events, final
