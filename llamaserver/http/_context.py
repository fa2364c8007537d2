"""What the HTTP views of one server share: settings, the engine, metrics, the key list.

One ``ApiContext`` per :class:`llamaserver.LlamaServer`; the views close over it, so two
servers in one process never see each other's state.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from quart import Response

from ..engine import Engine, GenerationRequest
from ..settings import ServerSettings
from ._drain import Drain
from ._errors import ApiError
from ._intake import RequestLimits
from ._llama_shapes import Pieces, generation_settings
from ._metrics import EngineCollector
from ._media import MediaPolicy
from ._pool import BoundedPool
from ._resolve import RequestDefaults

T = TypeVar("T")


class ApiContext:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.load_error: BaseException | None = None
        self.model_path: Path | None = settings.model
        self.created = int(time.time())
        self.pool: BoundedPool | None = None
        self.drain = Drain()
        self.limits = RequestLimits.from_settings(settings)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(self))
        self.build_info, self.fingerprint = _build_info()
        self._api_keys = [key.encode("utf-8") for key in settings.all_api_keys()]
        self._pieces: tuple[Engine, Pieces] | None = None
        self.defaults = RequestDefaults.from_settings(settings)
        self.media_policy = MediaPolicy.from_settings(settings)

    # ---- engine ------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``loading`` / ``ready`` / ``error`` as /health reports it."""
        if self.load_error is not None:
            return "error"
        if self.engine is None:
            return "loading"
        return self.engine.state

    @property
    def failure(self) -> str:
        """Why the server cannot serve (state ``error``): the model did not load, or the
        engine failed after loading (a remote RPC device went away, say)."""
        engine = self.engine
        if self.load_error is None and engine is not None and engine.error:
            return engine.error
        return "Model failed to load"

    def ready_engine(self) -> Engine:
        """The engine, or the 503/500 answer a request gets while it cannot serve."""
        state = self.state
        if state == "ready":
            assert self.engine is not None
            return self.engine
        if state == "error":
            raise ApiError(500, self.failure, "server_error")
        raise ApiError(503, "Loading model", "unavailable_error", retry_after=1)

    @property
    def pieces(self) -> Pieces:
        """Token texts of the ready engine's vocabulary (cached for the engine's life)."""
        engine = self.ready_engine()
        if self._pieces is None or self._pieces[0] is not engine:
            self._pieces = (engine, Pieces(engine.vocab))
        return self._pieces[1]

    def generation_settings(self, req: GenerationRequest, lora: tuple[float, ...], *,
                            stream: bool = False) -> dict[str, Any]:
        return generation_settings(req, lora, n_ctx=self.ready_engine().n_ctx_slot,
                                   model=self.model_id, stream=stream,
                                   speculative=",".join(self.settings.spec_type))

    def default_generation_settings(self) -> dict[str, Any]:
        """What a request that sets nothing gets (``/props``, idle ``/slots``)."""
        d = self.defaults
        default = GenerationRequest(tokens=[], sampling=d.sampling, n_predict=d.n_predict,
                                    n_keep=d.n_keep, cache_prompt=d.cache_prompt)
        scales = tuple(info.scale for info in self.ready_engine().lora_adapters())
        return self.generation_settings(default, scales)

    @property
    def model_aliases(self) -> list[str]:
        """Every name of the model (--alias a,b), or its id alone."""
        return list(self.settings.aliases) or [self.model_id]

    @property
    def model_id(self) -> str:
        """The model's name in API answers: --alias, else the model path."""
        if self.settings.alias:
            return self.settings.alias
        if self.model_path is not None:
            return str(self.model_path)
        return "default"

    # ---- blocking work -----------------------------------------------------------------
    def start_executor(self) -> None:
        if self.pool is None:
            workers = self.settings.threads_http or max((os.cpu_count() or 2) - 1,
                                                        self.settings.parallel + 2)
            self.pool = BoundedPool(workers, self.settings.http_queue_size)

    def stop_executor(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound per-request work (tokenizing, templating, parsing large bodies) off
        the event loop; 503 when too much of it is waiting (``--http-queue-size``)."""
        if self.pool is None:
            return fn(*args)
        return await self.pool.run(fn, *args)

    # ---- API keys ----------------------------------------------------------------------
    @property
    def auth_enabled(self) -> bool:
        return bool(self._api_keys)

    def key_is_valid(self, headers: Mapping[str, str]) -> bool:
        presented = _presented_key(headers)
        if presented is None:
            return False
        candidate = presented.encode("utf-8", "surrogateescape")
        # Compare against every key so the time taken does not tell which one matched.
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


def _build_info() -> tuple[str, str]:
    try:
        from llama_ffi import native_manifest

        commit = str(native_manifest().get("upstream_commit", ""))[:9]
    except Exception:  # a missing manifest must not keep the server from starting
        commit = ""
    commit = commit or "unknown"
    return f"llama.cpp-{commit}", f"b{commit}"


def _presented_key(headers: Mapping[str, str]) -> str | None:
    # Exactly "Bearer KEY", as llama-server reads it: no other scheme spelling, one space.
    auth = headers.get("Authorization")
    if auth and auth.startswith("Bearer ") and len(auth) > 7:
        return auth[7:]
    return headers.get("X-Api-Key") or None


def json_response(payload: Any, status: int = 200) -> Response:
    """JSON answer; a non-finite float (a timing of 0 tokens, say) becomes null."""
    return Response(dumps(payload), status=status, content_type="application/json")


def dumps(payload: Any) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(payload), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
