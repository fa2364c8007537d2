"""A bounded, seeded schemathesis run against the server's own /openapi.json.

Every operation of the document (aliases left out: they are the same view) gets requests
generated from its schemas, valid ones and invalid ones, on a server of its own (its system
prompt and slot files are the fuzzer's to change) whose ``-n 4`` keeps generation short.
Each answer must be documented (status, content type, schema), invalid input must be refused
with a 4xx, and nothing may be a 5xx but the documented 501 of a feature this server lacks.
``derandomize`` fixes hypothesis' seed: a failure reproduces, and its curl command is shown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               negative_data_rejection,
                                               response_schema_conformance,
                                               status_code_conformance)
from server_helpers import Running, running_server

EXAMPLES = 40           # per operation and mode: 50-60 s in all on two busy cores
BUDGET_S = 150          # a hard stop, far above the usual time, against a stuck run


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    slots: Path = tmp_path_factory.mktemp("fuzz-slots")
    # one thread: on a small shared machine two spinning decode threads can take seconds a step
    with running_server(parallel=2, ctx_size=2048, n_predict=4, embedding=True,
                        endpoint_metrics=True, endpoint_props=True, slot_save_path=slots,
                        alias="fuzz", threads=1, threads_batch=1) as running:
        yield running


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """Like schemathesis' not_a_server_error, but a 501 is this server's documented answer
    to a feature it was not started with (status_code_conformance checks it is listed)."""
    if response.status_code >= 500 and response.status_code != 501:
        raise AssertionError(f"{response.status_code}: {response.text[:300]}")


CHECKS = [no_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _operations(schema: Any) -> list[Any]:
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        if "x-alias-of" not in op.definition.raw:
            ops.append(op)
    return ops


def test_schemathesis_finds_nothing(fuzzed: Running) -> None:
    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")
    operations = _operations(schema)
    assert len(operations) >= 20, [op.label for op in operations]
    failures: list[str] = []
    deadline = time.monotonic() + BUDGET_S
    with requests.Session() as session:  # schemathesis' own transport
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                checks = CHECKS + ([negative_data_rejection] if mode.is_negative else [])
                failure = _fuzz(op, mode, checks, session, deadline)
                if failure:
                    failures.append(failure)
    assert time.monotonic() < deadline, "the fuzzing budget ran out: some operations were cut"
    assert not failures, "\n\n".join(failures)
    assert httpx.get(fuzzed.url + "/health", timeout=5).status_code == 200


def _fuzz(op: Any, mode: GenerationMode, checks: list[Any], session: requests.Session,
          deadline: float) -> str | None:
    found: list[str] = []

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if found or time.monotonic() > deadline:
            return
        try:
            response = case.call(session=session, timeout=60)
        except requests.RequestException as exc:  # no answer in time, or a dropped connection
            found.append(f"{op.label} ({mode.value}): {exc!r}\n  {case.as_curl_command()}")
            return
        try:
            case.validate_response(response, checks=checks)
        except (FailureGroup, AssertionError) as exc:  # report it, and fuzz the next one
            found.append(f"{op.label} ({mode.value}): {exc}\n  {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
        assert mode.is_negative, op.label
    return found[0] if found else None


def test_many_embedding_inputs_are_not_a_503(fuzzed: Running) -> None:
    # found while preparing the fuzzer: each input was queued at once, and a hundred of them
    # filled the wait queue (503 "retry later", forever) for a single request
    r = httpx.post(fuzzed.url + "/v1/embeddings",
                   json={"input": [f"text {i}" for i in range(100)]}, timeout=120)
    assert r.status_code == 200, r.text
    assert [d["index"] for d in r.json()["data"]] == list(range(100))
