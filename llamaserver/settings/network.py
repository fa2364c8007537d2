"""How the server is reached: addresses, TLS, API keys, CORS, endpoints."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from ._fields import SERVER, Directory, ExistingFile, Group, NameList, option, split_list

__all__ = ["NetworkSettings", "is_unix_socket"]

_opt = partial(option, group=SERVER)


def is_unix_socket(host: str) -> bool:
    """A --host entry naming a unix socket: a path ending in .sock (as llama-server), or
    ``unix:PATH``."""
    return host.endswith(".sock") or host.startswith("unix:")


class NetworkSettings(Group):
    host: str = _opt("--host", env="LLAMA_ARG_HOST", default="127.0.0.1", metavar="HOST[,HOST...]")
    """Addresses to listen on, comma-separated; an entry ending in .sock (or unix:PATH) is a unix
    socket. With several TCP addresses, :: is IPv6 only."""
    port: int = _opt("--port", env="LLAMA_ARG_PORT", default=8080, ge=0, le=65535, metavar="PORT")
    """Port to listen on (0 = any free port)."""
    reuse_port: bool = _opt("--reuse-port", env="LLAMA_ARG_REUSE_PORT", default=False)
    """Let other processes bind the same port (SO_REUSEPORT)."""
    path: Directory = _opt("--path", env="LLAMA_ARG_STATIC_PATH", default=None, metavar="PATH")
    """Directory of static files to serve at / instead of the built-in web UI (/completion.js stays
    available)."""
    webui: bool = _opt(
        "--ui", "--webui", env="LLAMA_ARG_UI", negative=("--no-ui", "--no-webui"), default=True)
    """Serve the web UI (or the --path folder) at /."""
    api_prefix: str = _opt("--api-prefix", env="LLAMA_ARG_API_PREFIX", default="", metavar="PREFIX")
    """URL prefix of every endpoint (e.g. /llama)."""
    api_key: NameList = _opt("--api-key", env="LLAMA_API_KEY", default_factory=list, metavar="KEY")
    """API key required in 'Authorization: Bearer KEY' or 'X-Api-Key: KEY' (repeatable, or
    comma-separated)."""
    api_key_file: ExistingFile = _opt(
        "--api-key-file", env="LLAMA_ARG_API_KEY_FILE", default=None, metavar="FNAME")
    """File with one API key per line (added to --api-key; lines starting with # are comments)."""
    ssl_key_file: ExistingFile = _opt(
        "--ssl-key-file", env="LLAMA_ARG_SSL_KEY_FILE", default=None, metavar="FNAME")
    """PEM-encoded private key for HTTPS."""
    ssl_cert_file: ExistingFile = _opt(
        "--ssl-cert-file", env="LLAMA_ARG_SSL_CERT_FILE", default=None, metavar="FNAME")
    """PEM-encoded certificate for HTTPS."""
    cors_origins: NameList = _opt(
        "--cors-origins", env="LLAMA_ARG_CORS_ORIGINS", default_factory=lambda: ["*"],
        metavar="ORIGINS", append=False)
    """Origins allowed to call the API from a browser, comma-separated (scheme://host[:port]); *
    allows any, 'localhost' any origin on this machine."""
    cors_methods: str = _opt(
        "--cors-methods", env="LLAMA_ARG_CORS_METHODS", default="GET, POST, DELETE, OPTIONS",
        metavar="METHODS")
    """Methods a CORS preflight allows."""
    cors_headers: str = _opt(
        "--cors-headers", env="LLAMA_ARG_CORS_HEADERS", default="*", metavar="HEADERS")
    """Request headers a CORS preflight allows (* = whatever the browser asks for)."""
    cors_credentials: bool = _opt(
        "--cors-credentials", env="LLAMA_ARG_CORS_CREDENTIALS", negative=("--no-cors-credentials",),
        default=True)
    """Allow allowed origins to send credentials (cookies, Authorization); with --cors-origins * the
    caller's origin is echoed."""
    timeout: int = _opt(
        "-to", "--timeout", env="LLAMA_ARG_TIMEOUT", default=600, ge=1, le=86_400, metavar="N")
    """Read/write timeout of a connection, in seconds."""
    sleep_idle_seconds: int = _opt(
        "--sleep-idle-seconds", default=-1, ge=-1, le=2**31 - 1, metavar="SECONDS")
    """Free the model after this many idle seconds and load it again on the next request (-1 =
    never)."""
    endpoint_slots: bool = _opt(
        "--slots", env="LLAMA_ARG_ENDPOINT_SLOTS",
        negative=("--no-slots", "--slots-endpoint-disable"), default=True)
    """Serve GET /slots and slot data in /health?include_slots (they may contain prompts)."""
    endpoint_metrics: bool = _opt("--metrics", env="LLAMA_ARG_ENDPOINT_METRICS", default=False)
    """Serve Prometheus metrics at GET /metrics."""
    endpoint_props: bool = _opt("--props", env="LLAMA_ARG_ENDPOINT_PROPS", default=False)
    """Allow POST /props to change server properties."""
    slot_save_path: Path | None = _opt("--slot-save-path", default=None, metavar="PATH")
    """Directory where slot prompt caches are saved and restored; the slot save/restore endpoints
    are disabled without it."""
    media_path: Directory = _opt("--media-path", default=None, metavar="PATH")
    """Directory from which requests may load media by relative file:// URLs (default: none)."""

    @field_validator("host", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        hosts = split_list(value)
        if not isinstance(hosts, list):
            return value
        if not hosts:
            raise ValueError("needs at least one address")
        # [::1] as in a URL is the address ::1
        return ",".join(h[1:-1] if h.startswith("[") and h.endswith("]") else h for h in hosts)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        out = []
        for origin in origins:
            normal = origin.rstrip("/").lower()
            scheme, sep, rest = normal.partition("://")
            if normal not in ("*", "localhost") and (not sep or not scheme or not rest
                                                      or "/" in rest):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], * or "
                                 "localhost)")
            out.append(normal)
        return out or ["*"]

    @field_validator("sleep_idle_seconds")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (never) or at least 1 second")
        return value

    @field_validator("api_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        return value

    @model_validator(mode="after")
    def _listeners(self) -> "NetworkSettings":
        if bool(self.ssl_key_file) != bool(self.ssl_cert_file):
            raise ValueError("HTTPS needs both --ssl-key-file and --ssl-cert-file")
        tcp = [h for h in self.hosts if not is_unix_socket(h)]
        if self.port == 0 and len(tcp) > 1:
            raise ValueError("--port 0 needs a single TCP address in --host")
        return self

    @property
    def hosts(self) -> list[str]:
        """The --host entries: IP addresses or names, and unix socket paths."""
        return self.host.split(",")

    def all_api_keys(self) -> list[str]:
        """--api-key values plus the lines of --api-key-file (blank lines and # comments
        ignored)."""
        keys = list(self.api_key)
        if self.api_key_file is not None:
            text = Path(self.api_key_file).read_text(encoding="utf-8")
            keys.extend(line.strip() for line in text.splitlines()
                        if line.strip() and not line.startswith("#"))
        return keys
