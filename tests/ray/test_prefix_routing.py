"""The prefix-aware routing decision without Ray: keys, the index, and the policy."""

from __future__ import annotations

from collections import Counter

from llamaserver.ray import PrefixIndex, RoutingKey, routing_key
from llamaserver.ray._policy import decide
from llamaserver.ray._routing_key import BLOCK_CHARS

SYSTEM = "You are a careful assistant. " * 12          # every chat shares it


def chat(*turns: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}]
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def key(*turns: str) -> RoutingKey:
    return routing_key("/v1/chat/completions", {"messages": chat(*turns)})


def route(k: RoutingKey, index: PrefixIndex, started: Counter, load=lambda r: 0,
          replicas=("a", "b")):
    decision = decide(k, list(replicas), load, index, started, imbalance=4)
    chosen = decision.ranks[0][0]
    if decision.new:
        started[chosen] += 1
    index.record(k.blocks, chosen)
    return chosen, decision.new


def test_a_chat_is_cut_at_its_messages() -> None:
    first = key("What is a river?").blocks
    second = key("What is a river?", "A stream of water.", "And a lake?").blocks
    assert len(first) == 2 and second[:2] == first and len(second) == 4
    assert key("Something else").blocks[:1] == first[:1]        # the shared system prompt
    assert key("Something else").blocks[1] != first[1]


def test_prompt_forms_and_routes_without_a_prompt() -> None:
    text = "x" * (3 * BLOCK_CHARS + 5)
    k = routing_key("/completion", {"prompt": text})
    assert len(k.blocks) == 3 and not k.whole
    assert routing_key("/completion", {"prompt": text[:3 * BLOCK_CHARS]}).whole
    assert routing_key("/completion", {"prompt": [text]}) == routing_key("/v1/completions", {"prompt": text})
    assert routing_key("/completion", {"prompt": {"prompt_string": text}}).blocks == k.blocks
    assert routing_key("/tokenize", {"content": text}).blocks == ()
    assert routing_key("/completion", ["not", "an", "object"]).blocks == ()


def test_conversations_return_to_their_replica_and_new_ones_spread() -> None:
    index, started = PrefixIndex(), Counter()
    placed = {}
    for topic in ("rivers", "owls", "bread", "copper"):
        placed[topic], new = route(key(f"Tell me about {topic}."), index, started)
        assert new                           # only the system prompt is known: new work
    assert set(placed.values()) == {"a", "b"}   # spread, though every chat shares the prompt
    for topic, replica in placed.items():
        follow_up = key(f"Tell me about {topic}.", "Some answer.", "Why?")
        assert route(follow_up, index, started) == (replica, False)
        assert route(follow_up, index, started) == (replica, False)   # the same turn again


def test_prompts_continue_only_past_their_blocks() -> None:
    index, started = PrefixIndex(), Counter()
    shared = "s" * (2 * BLOCK_CHARS)
    first, _ = route(routing_key("/completion", {"prompt": shared + "question one"}), index, started)
    # its next turn reaches past its blocks: back to its replica
    turn = shared + "question one" + " and its answer, then another question" * 4
    assert route(routing_key("/completion", {"prompt": turn}), index, started) == (first, False)
    # a prompt that shares the blocks and differs in its tail is new work: the other replica
    sibling, new = route(routing_key("/completion", {"prompt": shared + "question two"}), index, started)
    assert new and sibling != first


def test_a_busy_replica_gives_way_and_a_dead_one_is_forgotten() -> None:
    index, started = PrefixIndex(), Counter()
    first = key("Tell me about rivers.")
    index.record(first.blocks, "a")
    follow_up = key("Tell me about rivers.", "Water.", "More?")
    busy = {"a": 9, "b": 0}
    decision = decide(follow_up, ["a", "b"], busy.__getitem__, index, started, imbalance=4)
    assert decision.new and decision.ranks[0] == ["b"]
    index.forget(["a"])
    assert index.match(first.blocks, {"a", "b"}).depth == 0 and len(index) == 0


def test_the_index_is_bounded() -> None:
    index = PrefixIndex(max_entries=10)
    for n in range(5):
        index.record(routing_key("/completion", {"prompt": f"conversation {n} " * 30}).blocks, "a")
    assert len(index) == 10


def test_replica_count_or_autoscaling_bounds_from_the_settings() -> None:
    import pydantic
    import pytest

    from llamaserver.ray._app import _scaling, replica_settings
    from llamaserver.settings import ServerSettings

    assert _scaling(ServerSettings(ray_replicas=2)) == {"num_replicas": 2}
    scaling = _scaling(ServerSettings(ray_min_replicas=1, ray_max_replicas=4, ray_target_queue=3))
    assert scaling == {"autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                              "initial_replicas": 1, "target_ongoing_requests": 3}}
    with pytest.raises(pydantic.ValidationError, match="more than --ray-max-replicas"):
        ServerSettings(ray_min_replicas=3, ray_max_replicas=2)
    # a replica gets the server's settings, not where the front door listens or how to scale
    shipped = replica_settings(ServerSettings(ray_replicas=2, port=9000, parallel=3, api_key=["k"]))
    assert shipped == {"parallel": 3, "api_key": ["k"]}
