"""The continuous-batching engine on the real default model (4 slots, one engine per module)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from engine_helpers import collect, make_engine
from engine_helpers import request as greedy_request

from llama_ffi import InvalidTokenError
from llamaserver.engine import (
    Engine,
    GenerationRequest,
    InvalidRequest,
    Overloaded,
    TokenEvent,
)
from llamaserver.http._errors import to_api_error

N_SLOTS = 4
QUEUE = 8
_ENGINE: list[Engine] = []  # the module's engine, for greedy() below


@pytest.fixture(scope="module")
async def engine():
    eng = make_engine(ctx_size=1024, parallel=N_SLOTS, batch_size=512, queue_size=QUEUE,
                      embedding=True, threads=1)
    await eng.start()
    assert eng.state == "ready"
    _ENGINE.append(eng)
    yield eng
    _ENGINE.remove(eng)
    await eng.stop()


def greedy(prompt, n_predict=8, **kw) -> GenerationRequest:
    return greedy_request(_ENGINE[-1], prompt, n_predict, **kw)


async def wait_idle(engine: Engine, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(s.is_processing for s in engine.slots()) or engine.metrics().requests_deferred:
        assert time.monotonic() < deadline, "engine did not become idle"
        await asyncio.sleep(0.005)


async def test_stream_joins_to_final_content(engine):
    events, final = await collect(engine.submit(greedy("The capital of France is", 12)))
    assert "".join(e.text for e in events) == final.content
    assert [t for e in events for t in e.tokens] == final.tokens[: sum(len(e.tokens) for e in events)]
    assert final.tokens_predicted == len(final.tokens) + (1 if final.stopped_eos else 0)
    assert final.stopped_limit or final.stopped_eos
    assert final.tokens_evaluated == len(engine.vocab.tokenize("The capital of France is"))
    t = final.timings
    assert t.predicted_n == final.tokens_predicted and t.prompt_n > 0
    assert t.prompt_ms > 0 and t.predicted_ms > 0
    assert "Paris" in final.content


async def test_concurrent_requests_match_alone_and_use_all_slots(engine):
    await wait_idle(engine)
    prompts = [f"Question {i}: what is {i} plus {i}? Answer:" for i in range(2 * N_SLOTS)]
    # Alone, one at a time; cache_prompt=False so each evaluates its prompt from scratch.
    alone = [(await engine.submit(greedy(p, 10, cache_prompt=False)).result()).content
             for p in prompts]

    peak_busy, peak_deferred = 0, 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak_busy, peak_deferred
        while not done.is_set():
            busy = sum(s.is_processing for s in engine.slots())
            peak_busy = max(peak_busy, busy)
            peak_deferred = max(peak_deferred, engine.metrics().requests_deferred)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    streams = [engine.submit(greedy(p, 10, cache_prompt=False)) for p in prompts]
    results = await asyncio.gather(*(s.result() for s in streams))
    done.set()
    await watcher
    assert [r.content for r in results] == alone
    assert peak_busy == N_SLOTS
    assert peak_deferred > 0  # the other half really waited for slots
    assert engine.metrics().busy_slots_peak == N_SLOTS
    assert {r.id_slot for r in results} == set(range(N_SLOTS))


async def test_cancel_frees_slot_quickly(engine):
    await wait_idle(engine)
    stream = engine.submit(greedy("Once upon a time", 500, ignore_eos=True))
    first = await stream.__anext__()
    assert isinstance(first, TokenEvent)
    slot = stream.id_slot
    assert engine.slots()[slot].is_processing
    t0 = time.monotonic()
    await stream.cancel()
    while engine.slots()[slot].is_processing:
        assert time.monotonic() - t0 < 0.25, "slot not freed within 250 ms"
        await asyncio.sleep(0.002)
    assert time.monotonic() - t0 < 0.25
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_abandoned_stream_frees_slot(engine):
    await wait_idle(engine)
    async for _ in engine.submit(greedy("Once upon a time", 500, ignore_eos=True)):
        break  # the stream is dropped here, as a consumer that stops iterating
    gc.collect()
    t0 = time.monotonic()
    while any(s.is_processing for s in engine.slots()):
        assert time.monotonic() - t0 < 0.25
        await asyncio.sleep(0.002)


async def test_consumer_task_cancelled_frees_slot(engine):
    await wait_idle(engine)
    stream = engine.submit(greedy("Once upon a time", 500, ignore_eos=True))

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    while not any(s.is_processing for s in engine.slots()):
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.05)
    task.cancel()  # what the HTTP layer sees when a client disconnects
    with pytest.raises(asyncio.CancelledError):
        await task
    t0 = time.monotonic()
    while any(s.is_processing for s in engine.slots()):
        assert time.monotonic() - t0 < 0.25
        await asyncio.sleep(0.002)


async def test_stop_string_straddling_tokens_never_leaks(engine):
    prompt = "Here is a short story about a dragon:"
    base = await engine.submit(greedy(prompt, 24, ignore_eos=True)).result()
    vocab = engine.vocab
    pieces = [vocab.token_to_piece(t).decode("utf-8", "replace") for t in base.tokens]
    # A stop string made of the end of one token and the start of the next.
    k = next(i for i in range(2, len(pieces) - 1)
             if len(pieces[i].strip()) >= 2 and len(pieces[i + 1].strip()) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    expected = base.content[: base.content.index(stop)]

    events, final = await collect(engine.submit(greedy(prompt, 24, ignore_eos=True,
                                                       stop=["never-matches", stop])))
    sent = "".join(e.text for e in events)
    assert final.stopped_word and final.stopping_word == stop
    assert final.content == expected == sent
    assert stop not in sent
    # nothing that was sent was ever a prefix of the stop string that later completed it
    assert not any(stop.startswith(sent[i:]) for i in range(len(sent)) if sent[i:])


async def test_stop_prefix_is_released_when_generation_ends(engine):
    base = await engine.submit(greedy("The capital of France is", 6, ignore_eos=True)).result()
    # The last characters begin a stop string that never completes: they are held while
    # generation runs, then sent at the end.
    stop = base.content[-2:] + "\u2603never"
    events, final = await collect(engine.submit(
        greedy("The capital of France is", 6, ignore_eos=True, stop=[stop])))
    assert not final.stopped_word and final.stopped_limit
    assert "".join(e.text for e in events) == final.content == base.content


async def test_cache_prompt_reuses_prefix(engine):
    await wait_idle(engine)
    prompt = "A long and detailed description of the solar system, its planets and moons:"
    n_prompt = len(engine.vocab.tokenize(prompt))
    first = await engine.submit(greedy(prompt, 4, id_slot=2)).result()
    again = await engine.submit(greedy(prompt, 4, id_slot=2)).result()
    assert first.id_slot == again.id_slot == 2
    assert again.tokens_cached == n_prompt - 1  # the last token is evaluated for its logits
    assert again.timings.prompt_n == 1 and again.timings.cache_n == n_prompt - 1
    assert again.content == first.content
    # With id_slot -1 the slot holding the longest common prefix is chosen.
    other = await engine.submit(greedy(prompt + " Mercury", 4)).result()
    assert other.id_slot == 2 and other.tokens_cached >= n_prompt
    fresh = await engine.submit(greedy(prompt, 4, id_slot=2, cache_prompt=False)).result()
    assert fresh.tokens_cached == 0 and fresh.timings.prompt_n == n_prompt


async def test_requested_busy_slot_waits(engine):
    await wait_idle(engine)
    a = engine.submit(greedy("One, two, three,", 12, ignore_eos=True, id_slot=1))
    b = engine.submit(greedy("Red, green, blue,", 4, ignore_eos=True, id_slot=1))
    order: list[str] = []

    async def run(name, stream):
        final = await stream.result()
        order.append(name)
        return final

    fa, fb = await asyncio.gather(run("a", a), run("b", b))
    assert fa.id_slot == fb.id_slot == 1
    assert order == ["a", "b"]  # b is shorter but had to wait for slot 1


async def test_free_slot_next_to_busy_ones_is_chosen(engine):
    # Busy sequences should form one run of ids, which libllama decodes as a single graph.
    await wait_idle(engine)
    await engine.submit(greedy("Numbers: one, two", 2, id_slot=3)).result()
    await engine.submit(greedy("Colours: red, blue", 2, id_slot=1)).result()  # now the newest
    long_runs = [engine.submit(greedy("Count: 1, 2, 3,", 40, ignore_eos=True, id_slot=i))
                 for i in (0, 2)]
    deadline = time.monotonic() + 30
    while not all(engine.slots()[i].is_processing for i in (0, 2)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    filler = engine.submit(greedy("The weather in spring is", 4))
    while filler.id_slot < 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    busy = [slot.id for slot in engine._worker.active]
    final = await filler.result()
    await asyncio.gather(*(run.result() for run in long_runs))
    assert final.id_slot == 1  # least recently used alone would take slot 3
    assert busy == sorted(busy)  # the batch is built in this order


async def test_invalid_requests(engine):
    # token ids are checked where prompts are tokenized (the HTTP edge uses the same call)
    with pytest.raises(InvalidTokenError):
        greedy([1, 2, 10**9])
    with pytest.raises(InvalidTokenError):
        greedy([1, -5])
    with pytest.raises(InvalidRequest):
        engine.submit(greedy("hello", id_slot=N_SLOTS))
    with pytest.raises(InvalidRequest):
        engine.submit(greedy("hello", id_slot=-2))
    with pytest.raises(InvalidRequest):
        engine.submit(greedy("hi", 1, grammar="root ::= ("))
    # a prompt that cannot fit while keeping all of it
    long_prompt = "word " * (engine.n_ctx_slot + 10)
    with pytest.raises(InvalidRequest):
        engine.submit(greedy(long_prompt, n_keep=-1))
    e = to_api_error(InvalidRequest("x"))
    assert e.status == 400 and e.type == "invalid_request_error"


async def test_grammar_failing_on_the_worker_is_invalid_request(engine):
    # The grammar parses, so submit (and the HTTP pre-check) accept it; only when sampling on
    # the worker thread does it turn out that logit_bias bans the one token it allows.
    x = engine.vocab.tokenize("x", add_special=False)
    stream = engine.submit(greedy("hi", 3, grammar='root ::= "x"',
                                  logit_bias={x[0]: float("-inf")}))
    with pytest.raises(InvalidRequest, match="grammar") as caught:
        await stream.result()
    assert to_api_error(caught.value).status == 400
    await wait_idle(engine)
    assert (await engine.submit(greedy("hi", 2)).result()).tokens_predicted == 2


async def test_mixed_prompt_tokens_and_text(engine):
    vocab = engine.vocab
    text = await engine.submit(greedy("The capital of France is", 4)).result()
    mixed = await engine.submit(greedy(["The capital", *vocab.tokenize(" of France is",
                                                                       add_special=False)],
                                       4)).result()
    assert mixed.content == text.content


async def test_queue_full_is_overloaded(engine):
    await wait_idle(engine)
    streams = []
    with pytest.raises(Overloaded) as info:
        for _ in range(N_SLOTS + QUEUE + 5):
            streams.append(engine.submit(greedy("Count to ten:", 200, ignore_eos=True)))
    assert to_api_error(info.value).status == 503 and info.value.retry_after >= 1
    assert len(streams) >= QUEUE  # the queue held QUEUE requests before refusing
    for s in streams:
        await s.cancel()
    await wait_idle(engine)


async def test_n_probs(engine):
    events, final = await collect(engine.submit(greedy("The capital of France is", 4,
                                                       n_probs=3)))
    entries = [p for e in events for p in (e.probs or [])]
    assert len(entries) == sum(len(e.tokens) for e in events) > 0
    assert [p.token for p in entries] == [t for e in events for t in e.tokens]
    for entry in entries:
        assert 1 <= len(entry.top) <= 3
        probs = [p for _, p in entry.top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert entry.top[0][0] == entry.token  # greedy picks the top one
        assert entry.prob == entry.top[0][1]


async def test_n_predict_zero_only_evaluates(engine):
    final = await engine.submit(greedy("Just cache this prompt.", 0)).result()
    assert final.content == "" and final.tokens_predicted == 0 and final.stopped_limit


async def test_embedding(engine):
    def tokens(text):
        return engine.vocab.tokenize(text)

    a = await engine.embed(tokens("a cat sat on the mat"))
    b = await engine.embed(tokens("a cat sat on the mat"))
    c = await engine.embed(tokens("quantum chromodynamics"))
    assert a.pooled and len(a.vectors) == 1 and len(a.vectors[0]) == engine.model.n_embd
    assert a.vectors == b.vectors
    assert a.vectors != c.vectors
    assert a.n_tokens == len(tokens("a cat sat on the mat"))
    with pytest.raises(InvalidRequest):
        await engine.embed([])


async def test_slots_metrics_shapes(engine):
    slots = engine.slots()
    assert [s.id for s in slots] == list(range(N_SLOTS))
    for s in slots:
        assert s.n_ctx == engine.n_ctx_slot and s.request is None and not s.is_processing
    m = engine.metrics()
    assert m.prompt_tokens_total > 0 and m.tokens_predicted_total > 0
    assert m.requests_processing == 0 and m.requests_deferred == 0
    assert 0 < m.kv_cache_usage_ratio < 1 and m.python_ms_per_step > 0
    assert m.decode_ms_per_step > 0


async def test_python_overhead_is_small(engine):
    await wait_idle(engine)
    before = engine.metrics()
    await asyncio.gather(*(engine.submit(greedy(f"List of {w}:", 24, ignore_eos=True)).result()
                           for w in ("fruits", "colors", "animals", "cities")))
    after = engine.metrics()
    steps = after.gen_steps_total - before.gen_steps_total
    py = (after.gen_python_ms_per_step * after.gen_steps_total
          - before.gen_python_ms_per_step * before.gen_steps_total) / steps
    dec = (after.gen_decode_ms_per_step * after.gen_steps_total
           - before.gen_decode_ms_per_step * before.gen_steps_total) / steps
    print(f"\nper generation step: python {py:.3f} ms, decode {dec:.3f} ms")
    assert steps >= 20
    assert py < dec  # sampling + batching + events cost less than the model itself


async def test_system_prompt_shared(engine):
    from llamaserver.engine import SystemPrompt

    await wait_idle(engine)
    vocab = engine.vocab
    system = "Transcript of a dialog between a User and a helpful Assistant.\nUser: Hi\nAssistant: Hello!\nUser:"
    user = " What is the capital of France?\nAssistant:"
    engine.set_system_prompt(SystemPrompt.from_text(vocab, system, "User:", "Assistant:"))
    current = engine.system_prompt
    assert (current.text, current.user_name, current.assistant_name) == (
        system, "User:", "Assistant:")
    n_user = len(vocab.tokenize(user, add_special=False))
    # Two slots at once: each evaluates only its own prompt, the system prompt is copied in.
    finals = await asyncio.gather(
        engine.submit(greedy(user, 6, id_slot=0, cache_prompt=False)).result(),
        engine.submit(greedy(user, 6, id_slot=3, cache_prompt=False)).result())
    n_sys = len(vocab.tokenize(system, add_special=True, parse_special=True))
    for f in finals:
        assert f.timings.prompt_n == n_user
        assert f.tokens_evaluated == n_user
        assert f.tokens_cached == n_sys  # the system prompt was in the slot already
    assert finals[0].content == finals[1].content

    # The same tokens as one plain prompt give the same text.
    sys_tokens = vocab.tokenize(system, add_special=True, parse_special=True)
    user_tokens = vocab.tokenize(user, add_special=False, parse_special=True)
    cleared = await engine.submit(greedy(sys_tokens + user_tokens, 6, system_prompt="",
                                         cache_prompt=False)).result()
    assert cleared.content == finals[0].content
    assert engine.system_prompt.text == ""

    # A per-request system prompt replaces the shared one.
    final = await engine.submit(greedy(user, 6, system_prompt=system)).result()
    assert final.content == finals[0].content and engine.system_prompt.text == system
    engine.set_system_prompt(SystemPrompt())


async def test_unexpected_failure_fails_one_request_not_the_engine(engine):
    # A system prompt that cannot be evaluated (a token id no edge would let through) fails
    # its own request on the worker thread; the engine goes on serving.
    from llamaserver.engine import EngineError, SystemPrompt

    await wait_idle(engine)
    broken = SystemPrompt("broken", (1, engine.vocab.n_tokens + 5))
    stream = engine.submit(GenerationRequest(engine.vocab.tokenize("hi"), n_predict=2,
                                             system_prompt=broken))
    with pytest.raises(EngineError, match="system prompt"):
        await stream.result()
    too_long = SystemPrompt("x", tuple([1] * engine.n_ctx_slot))
    with pytest.raises(InvalidRequest):
        engine.submit(GenerationRequest(engine.vocab.tokenize("hi"), n_predict=2,
                                        system_prompt=too_long))
    assert engine.state == "ready"
    final = await engine.submit(greedy("The capital of France is", 4, system_prompt="")).result()
    assert "Paris" in final.content
    engine.set_system_prompt(SystemPrompt())


async def test_token_budget_forces_the_end_of_a_span(engine):
    from llamaserver.engine import TokenBudget

    vocab = engine.vocab
    forced = tuple(vocab.tokenize(" Enough.</think>", add_special=False, parse_special=True))
    free = await engine.submit(greedy("Let me think about llamas.", 12, ignore_eos=True)).result()
    budget = TokenBudget(end="</think>", n=3, forced=forced)
    final = await engine.submit(greedy("Let me think about llamas.", 12, ignore_eos=True,
                                       budget=budget)).result()
    # three tokens as sampled, then the forced ones, then sampling again
    assert final.tokens[:3] == free.tokens[:3]
    assert final.tokens[3:3 + len(forced)] == list(forced)
    assert "</think>" in final.content and final.tokens_predicted == 12
    # a span that closes by itself before its budget is left alone
    closing = TokenBudget(end=vocab.detokenize(free.tokens[:2]), n=50, forced=forced)
    untouched = await engine.submit(greedy("Let me think about llamas.", 12, ignore_eos=True,
                                           budget=closing)).result()
    assert untouched.tokens == free.tokens
    # the budget opens only at its start marker
    start = vocab.detokenize(free.tokens[4:6])
    late = TokenBudget(start=start, end="</think>", n=2, forced=forced)
    opened = await engine.submit(greedy("Let me think about llamas.", 16, ignore_eos=True,
                                        budget=late)).result()
    assert opened.tokens[:8] == free.tokens[:8]
    assert opened.tokens[8:8 + len(forced)] == list(forced)
    # a budget of 0 writes the closing tokens before anything is sampled, at once or at start
    at_once = await engine.submit(greedy("Let me think about llamas.", 8, ignore_eos=True,
                                         budget=TokenBudget(end="</think>", n=0,
                                                            forced=forced))).result()
    assert at_once.tokens[:len(forced)] == list(forced)
    zero_late = TokenBudget(start=start, end="</think>", n=0, forced=forced)
    closed = await engine.submit(greedy("Let me think about llamas.", 12, ignore_eos=True,
                                        budget=zero_late)).result()
    assert closed.tokens[:6] == free.tokens[:6]
    assert closed.tokens[6:6 + len(forced)] == list(forced)
