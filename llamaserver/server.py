"""``LlamaServer``: one model, one engine, its HTTP API, and the ways to host it.

Hosting options::

    server = LlamaServer(ctx_size=4096, parallel=4)

    server.serve()                              # hypercorn on --host/--port (blocking)
    await server.serve_async()                  # the same inside a running event loop

    server.app                                  # a Quart app (lifespan starts/stops the engine)
    server.asgi                                 # the same app as a plain ASGI callable

    host_app.register_blueprint(server.blueprint(url_prefix="/llm"))
    server.mount(host_app, "/llm")              # the same; startup/shutdown hooks are added
                                                # to the host Quart app's serving lifecycle

    # ASGI hosts that do not pass lifespan events to mounted apps (Starlette's Mount):
    await server.startup()                      # in the host's own lifespan/startup
    await server.shutdown()

The model loads in a worker thread.  Under ``.app``'s lifespan (and ``serve()``) loading runs
in the background, so the server listens at once and ``/health`` answers 503 "loading model"
until it is ready; ``await server.startup()`` waits for the model unless ``wait=False``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from quart import Blueprint, Quart

from ._cors import CorsPolicy, install_cors
from ._listen import open_listeners
from ._webui import add_ui_routes
from .engine import Engine
from .http import ApiContext, add_app_auth, create_blueprint, register_error_handlers
from .settings import ServerSettings

__all__ = ["LlamaServer"]

_log = logging.getLogger("llamaserver")

# After a drain is cut: how long the views may take to write the answers it gave them.
_WRITE_GRACE_S = 2.0
# hypercorn's wait for connections once the drain is over (idle ones close at once).
_GRACEFUL_S = 2.0
# hypercorn's default: a connection may sit idle (or send its headers) this long.
_KEEP_ALIVE_S = 5.0


class LlamaServer:
    """A llama.cpp-compatible HTTP server for one model.

    ``LlamaServer(settings)`` or ``LlamaServer(**fields)``, or both (keywords override the
    settings).  Nothing is shared between instances: several servers with different models
    can live in one process.
    """

    def __init__(self, settings: ServerSettings | None = None, **overrides: Any) -> None:
        if settings is None:
            settings = ServerSettings(**overrides)
        elif overrides:
            settings = ServerSettings.model_validate(
                {**settings.model_dump(exclude_unset=True), **overrides})
        self.settings = settings
        self._ctx = ApiContext(settings)
        self._app: Quart | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._started = False

    # ---- state -------------------------------------------------------------------------
    @property
    def engine(self) -> Engine | None:
        """The engine once :meth:`startup` has created it (``None`` before)."""
        return self._ctx.engine

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``error``."""
        return self._ctx.state

    @property
    def error(self) -> str | None:
        """Why the server cannot serve, in state ``error`` (else ``None``)."""
        return self._ctx.failure if self.state == "error" else None

    @property
    def model_path(self) -> Path | None:
        return self._ctx.model_path

    # ---- lifecycle ---------------------------------------------------------------------
    async def startup(self, *, wait: bool = True) -> None:
        """Load the model and start the engine; safe to call more than once.

        With ``wait=False`` loading continues in the background and requests get 503
        "Loading model" meanwhile.  With ``wait=True`` a load failure is raised here.
        """
        if not self._started:
            self._started = True
            self._ctx.load_error = None
            self._ctx.drain.reset()
            self._ctx.start_executor()
            self._load_task = asyncio.ensure_future(self._load())
        if wait and self._load_task is not None:
            await asyncio.shield(self._load_task)
            if self._ctx.load_error is not None:
                raise self._ctx.load_error

    async def wait_ready(self) -> None:
        """Wait until the model is loaded (raises what loading raised)."""
        await self.startup(wait=True)

    async def shutdown(self) -> None:
        """Drain, stop the engine and free the model; the server can be started again.

        New requests get 503 at once; running ones may finish within ``shutdown_timeout``
        (``--shutdown-timeout``); then streams end with a final event that says they were cut
        and every other request still running gets 503 (see ``http/_drain.py``).
        """
        if not self._started:
            return
        self._started = False
        drain = self._ctx.drain
        drain.start()
        await drain.wait_idle(self.settings.shutdown_timeout)
        drain.cut()
        task, self._load_task = self._load_task, None
        if task is not None:
            # A download may be abandoned; a model half-way through loading in the engine's
            # thread may not (its native handles would be freed under that thread's feet).
            if not task.done() and self._ctx.engine is None:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        engine = self._ctx.engine
        if engine is not None:
            await engine.halt()
            await drain.wait_idle(_WRITE_GRACE_S)  # the views write what the cut gave them
            self._ctx.engine = None
            await engine.stop()
        self._ctx.stop_executor()

    def hurry_shutdown(self) -> None:
        """Stop waiting for running requests in a shutdown under way (a second Ctrl-C)."""
        self._ctx.drain.hurry()

    async def _load(self) -> None:
        from ._download import resolve_mmproj_path, resolve_model_path
        from ._engine_config import engine_config

        try:
            path = await asyncio.to_thread(resolve_model_path, self.settings)
            self._ctx.model_path = path
            mmproj = await asyncio.to_thread(resolve_mmproj_path, self.settings)
            engine = Engine(engine_config(self.settings, path, mmproj))
            self._ctx.engine = engine
            await engine.start()
            if engine.state == "error":
                raise RuntimeError("the engine failed to start")
            _log.info("model loaded: %s", path)
        except Exception as exc:
            self._ctx.load_error = exc
            _log.error("failed to load the model: %s", exc)

    # ---- hosting -----------------------------------------------------------------------
    def blueprint(self, url_prefix: str | None = None, *, name: str | None = None,
                  lifecycle: bool = True) -> Blueprint:
        """A new blueprint with every endpoint, for ``host_app.register_blueprint``.

        With ``lifecycle`` the host app's before/after-serving hooks start and stop this
        server.  ``name`` defaults to one derived from the prefix.
        """
        prefix = (url_prefix or "").rstrip("/") or None
        if name is None:
            name = "llamaserver" + (re.sub(r"[^A-Za-z0-9_]", "_", prefix) if prefix else "")
        bp = create_blueprint(self._ctx, name=name, url_prefix=prefix)
        if lifecycle:
            bp.before_app_serving(self._start_in_background)
            bp.after_app_serving(self.shutdown)
        return bp

    def mount(self, app: Quart, prefix: str = "") -> Blueprint:
        """Register this server's endpoints on ``app`` under ``prefix``."""
        bp = self.blueprint(url_prefix=prefix)
        app.register_blueprint(bp)
        return bp

    async def _start_in_background(self) -> None:
        await self.startup(wait=False)

    @property
    def app(self) -> Quart:
        """A Quart app serving the API (created on first use)."""
        if self._app is None:
            self._app = self._create_app()
        return self._app

    @property
    def asgi(self) -> Callable[..., Awaitable[None]]:
        """The app as an ASGI callable. Hosts that do not forward lifespan events to it
        must call :meth:`startup` and :meth:`shutdown` themselves."""
        return self.app

    def _create_app(self) -> Quart:
        settings = self.settings
        app = Quart("llamaserver", static_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = settings.body_max_bytes
        app.config["BODY_TIMEOUT"] = settings.timeout
        app.config["RESPONSE_TIMEOUT"] = settings.timeout
        app.register_blueprint(self.blueprint(url_prefix=settings.api_prefix or None))
        register_error_handlers(app)  # 404/405 for unknown routes, in the same shape
        add_app_auth(app, self._ctx)
        add_ui_routes(app, settings,  # after the API, whose routes it must not shadow
                      key_is_valid=self._ctx.key_is_valid if self._ctx.auth_enabled else None)
        install_cors(app, CorsPolicy(settings.cors_origins, settings.cors_methods,
                                     settings.cors_headers, settings.cors_credentials))
        return app

    def _hypercorn_config(self, binds: list[str]) -> Any:
        from hypercorn.config import Config

        config = Config()
        config.bind = binds
        # --timeout bounds a client's headers (hypercorn counts a connection idle until they
        # are complete, and closes it after keep_alive_timeout), its body and the writing of a
        # non-streamed answer (Quart's BODY_TIMEOUT / RESPONSE_TIMEOUT).  hypercorn's
        # read_timeout is left unset: it would also cut a client that waits quietly for a
        # long generation.
        config.keep_alive_timeout = min(_KEEP_ALIVE_S, float(self.settings.timeout))
        config.graceful_timeout = _GRACEFUL_S
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        if self.settings.ssl_cert_file and self.settings.ssl_key_file:
            config.certfile = str(self.settings.ssl_cert_file)
            config.keyfile = str(self.settings.ssl_key_file)
        return config

    async def serve_async(self, *, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
                          on_listening: Callable[[str], None] | None = None) -> None:
        """Serve with hypercorn until ``shutdown_trigger`` returns (default: SIGINT/SIGTERM).

        Listens on every ``--host`` entry (TCP addresses on ``--port``, unix sockets).
        ``on_listening(url)`` is called once per socket after it is bound (default: print
        the URL).
        """
        from hypercorn.asyncio import serve

        listeners = open_listeners(self.settings)
        try:
            config = self._hypercorn_config([lst.hypercorn_bind() for lst in listeners])
            for listener in listeners:
                (on_listening or _print_url)(listener.url)
            await serve(self.app, config,  # type: ignore[arg-type]
                        shutdown_trigger=shutdown_trigger)
        finally:
            for listener in listeners:
                listener.close()

    def serve(self) -> None:
        """Serve until interrupted (what the ``llamaserver`` command runs)."""
        asyncio.run(self.serve_async())


def _print_url(url: str) -> None:
    print(f"llamaserver listening on {url}", flush=True)

