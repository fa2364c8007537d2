"""Engine start/stop, a system prompt file, and self-extend (--grp-attn-n/-w)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from engine_helpers import make_engine, request

from llamaserver.engine import FinalEvent, GenerationRequest, NotReady
from llamaserver.http._errors import to_api_error

SYSTEM = "A chat between a User and an Assistant.\nUser:"


@pytest.fixture(scope="module")
async def engine(tmp_path_factory):
    spf = tmp_path_factory.mktemp("spf") / "system.json"
    spf.write_text(json.dumps({"system_prompt": {
        "prompt": SYSTEM, "anti_prompt": "User:", "assistant_name": "Assistant:"}}))
    eng = make_engine(ctx_size=512, parallel=2, batch_size=256, threads=1,
                      grp_attn_n=2, grp_attn_w=64, system_prompt_file=spf)
    await eng.start()
    yield eng
    await eng.stop()


async def test_not_ready_before_start():
    eng = make_engine()
    assert eng.state == "loading"
    with pytest.raises(NotReady) as info:
        eng.submit(GenerationRequest([1, 2, 3], n_predict=1))
    assert to_api_error(info.value).status == 503


async def test_system_prompt_file_is_loaded(engine):
    system = engine.system_prompt
    assert system.text == SYSTEM
    assert system.user_name == "User:" and system.assistant_name == "Assistant:"


async def test_self_extend_compresses_positions(engine):
    n_predict = 150
    final = await engine.submit(request(engine, " Tell me a long story.\nAssistant:",
                                        n_predict, ignore_eos=True)).result()
    assert final.tokens_predicted == n_predict and not final.truncated
    worker = engine._worker
    slot = worker.slots[final.id_slot]
    n_cells = len(slot.cache.tokens)
    assert n_cells > 64 * 2
    # grouped attention: positions grow by 1/ga_n past the window, so they stay well below
    # the number of tokens held
    assert worker.ctx.seq_pos_max(slot.seq) < n_cells - 40
    assert final.content.strip()


async def test_stop_ends_streams_and_refuses_new_requests(engine):
    stream = engine.submit(request(engine, " Count from one to a thousand.\nAssistant:", 400,
                                   ignore_eos=True))
    first = await stream.__anext__()
    assert not isinstance(first, FinalEvent)
    t0 = time.monotonic()
    await engine.stop()
    events = [event async for event in stream]
    final = events[-1]  # what it had, and a final event that says it was cut
    assert isinstance(final, FinalEvent) and final.stopped_shutdown
    assert not (final.stopped_eos or final.stopped_limit or final.stopped_word)
    assert 0 < final.tokens_predicted < 400
    assert first.text + "".join(e.text for e in events[:-1]) == final.content
    assert time.monotonic() - t0 < 5
    with pytest.raises(NotReady):
        engine.submit(GenerationRequest([1, 2, 3], n_predict=1))
    await asyncio.sleep(0)
