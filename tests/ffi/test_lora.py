"""LoraAdapter and Context.set_loras on the default model, with adapters written by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from llama_ffi import Context, LlamaError, LoraAdapter, Model, ModelLoadError, SamplerChain, SamplerParams

PROMPT = "The three primary colors are"


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, model: Model, write_lora: Callable) -> Path:
    directory = tmp_path_factory.mktemp("lora")
    write_lora(directory / "noop.gguf", model, zero=True)
    write_lora(directory / "strong.gguf", model, zero=False, seed=1)
    write_lora(directory / "wrong-shape.gguf", model, zero=False, n_embd=model.n_embd // 2)
    return directory


def greedy_run(model: Model, ctx: Context, generate: Callable) -> list[int]:
    prompt = model.vocab.tokenize(PROMPT, add_special=True)
    with SamplerChain(model, SamplerParams(temperature=0.0)) as chain:
        return generate(ctx, chain, prompt, 8)


def test_adapter_changes_generation_by_scale(model: Model, ctx: Context, generate: Callable,
                                             lora_dir: Path) -> None:
    base = greedy_run(model, ctx, generate)
    with LoraAdapter(model, lora_dir / "strong.gguf") as strong, \
            LoraAdapter(model, lora_dir / "noop.gguf") as noop:
        assert strong.metadata()["adapter.type"] == "lora"
        assert strong.alora_invocation_tokens == []
        ctx.set_loras({strong: 1.0})
        assert ctx.loras == {strong: 1.0}
        changed = greedy_run(model, ctx, generate)
        ctx.set_loras({strong: 0.0, noop: 1.0})  # scale 0 and a zero B both leave the model as is
        assert greedy_run(model, ctx, generate) == base
        ctx.set_loras({strong: 1.0})
        assert greedy_run(model, ctx, generate) == changed
        ctx.set_loras({})
        assert greedy_run(model, ctx, generate) == base
        ctx.set_loras({strong: 1.0})
    # closing the adapter took it off the context
    assert ctx.loras == {} and strong.closed
    assert greedy_run(model, ctx, generate) == base
    assert changed != base


def test_bad_adapters_are_clear_errors(model: Model, ctx: Context, lora_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        LoraAdapter(model, tmp_path / "missing.gguf")
    with pytest.raises(ModelLoadError, match="failed to load LoRA adapter"):
        LoraAdapter(model, lora_dir / "wrong-shape.gguf")
    not_gguf = tmp_path / "junk.gguf"
    not_gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError):
        LoraAdapter(model, not_gguf)
    with LoraAdapter(model, lora_dir / "noop.gguf") as adapter:
        with pytest.raises(ValueError, match="finite"):
            ctx.set_loras({adapter: float("nan")})
    with pytest.raises(LlamaError, match="closed"):
        ctx.set_loras({adapter: 1.0})


def test_model_close_closes_its_adapters(model_path: Path, lora_dir: Path) -> None:
    other = Model(model_path)
    adapter = LoraAdapter(other, lora_dir / "noop.gguf")
    with Context(other, n_ctx=256, n_threads=1) as ctx:
        ctx.set_loras({adapter: 1.0})
        other.close()
        assert adapter.closed and ctx.closed



def test_llama_applies_adapters(model: Model, model_path: Path, lora_dir: Path) -> None:
    from llama_ffi import Llama

    with Llama(model_path, n_ctx=256, n_threads=1) as plain:
        base = plain.generate(PROMPT, max_tokens=8, temperature=0.0)
    with Llama(model_path, n_ctx=256, n_threads=1, lora=lora_dir / "strong.gguf") as adapted:
        assert [a.path.name for a in adapted.context.loras] == ["strong.gguf"]
        changed = adapted.generate(PROMPT, max_tokens=8, temperature=0.0)
    with Llama(model_path, n_ctx=256, n_threads=1, lora={lora_dir / "strong.gguf": 0.0}) as off:
        assert off.generate(PROMPT, max_tokens=8, temperature=0.0) == base
    assert changed != base
