"""How the server is reached: addresses, TLS, API keys, CORS, endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ._fields import SERVER, Group, cli, existing_file, split_list

__all__ = ["NetworkSettings", "is_unix_socket"]


def is_unix_socket(host: str) -> bool:
    """A --host entry naming a unix socket: a path ending in .sock (as llama-server), or
    ``unix:PATH``."""
    return host.endswith(".sock") or host.startswith("unix:")


class NetworkSettings(Group):
    host: str = Field(
        "127.0.0.1", description="Addresses to listen on, comma-separated; an entry ending in "
        ".sock (or unix:PATH) is a unix socket. With several TCP addresses, :: is IPv6 only.",
        json_schema_extra=cli("--host", env="LLAMA_ARG_HOST", group=SERVER,
                              metavar="HOST[,HOST...]"))
    port: int = Field(
        8080, ge=0, le=65535, description="Port to listen on (0 = any free port).",
        json_schema_extra=cli("--port", env="LLAMA_ARG_PORT", group=SERVER, metavar="PORT"))
    reuse_port: bool = Field(
        False, description="Let other processes bind the same port (SO_REUSEPORT).",
        json_schema_extra=cli("--reuse-port", env="LLAMA_ARG_REUSE_PORT", group=SERVER))
    path: Path | None = Field(
        None, description="Directory of static files to serve at / instead of the built-in "
        "web UI (/completion.js stays available).",
        json_schema_extra=cli("--path", env="LLAMA_ARG_STATIC_PATH", group=SERVER,
                              metavar="PATH"))
    webui: bool = Field(
        True, description="Serve the web UI (or the --path folder) at /.",
        json_schema_extra=cli("--ui", "--webui", negative=("--no-ui", "--no-webui"),
                              env="LLAMA_ARG_UI", group=SERVER))
    api_prefix: str = Field(
        "", description="URL prefix of every endpoint (e.g. /llama).",
        json_schema_extra=cli("--api-prefix", env="LLAMA_ARG_API_PREFIX", group=SERVER,
                              metavar="PREFIX"))
    api_key: list[str] = Field(
        default_factory=list, description="API key required in 'Authorization: Bearer KEY' or "
        "'X-Api-Key: KEY' (repeatable, or comma-separated).",
        json_schema_extra=cli("--api-key", env="LLAMA_API_KEY", group=SERVER, metavar="KEY"))
    api_key_file: Path | None = Field(
        None, description="File with one API key per line (added to --api-key; lines "
        "starting with # are comments).",
        json_schema_extra=cli("--api-key-file", env="LLAMA_ARG_API_KEY_FILE", group=SERVER,
                              metavar="FNAME"))
    ssl_key_file: Path | None = Field(
        None, description="PEM-encoded private key for HTTPS.",
        json_schema_extra=cli("--ssl-key-file", env="LLAMA_ARG_SSL_KEY_FILE", group=SERVER,
                              metavar="FNAME"))
    ssl_cert_file: Path | None = Field(
        None, description="PEM-encoded certificate for HTTPS.",
        json_schema_extra=cli("--ssl-cert-file", env="LLAMA_ARG_SSL_CERT_FILE", group=SERVER,
                              metavar="FNAME"))
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"], description="Origins allowed to call the API from a "
        "browser, comma-separated (scheme://host[:port]); * allows any, 'localhost' any "
        "origin on this machine.",
        json_schema_extra=cli("--cors-origins", env="LLAMA_ARG_CORS_ORIGINS", group=SERVER,
                              metavar="ORIGINS", append=False))
    cors_methods: str = Field(
        "GET, POST, DELETE, OPTIONS", description="Methods a CORS preflight allows.",
        json_schema_extra=cli("--cors-methods", env="LLAMA_ARG_CORS_METHODS", group=SERVER,
                              metavar="METHODS"))
    cors_headers: str = Field(
        "*", description="Request headers a CORS preflight allows (* = whatever the browser "
        "asks for).",
        json_schema_extra=cli("--cors-headers", env="LLAMA_ARG_CORS_HEADERS", group=SERVER,
                              metavar="HEADERS"))
    cors_credentials: bool = Field(
        True, description="Allow allowed origins to send credentials (cookies, "
        "Authorization); with --cors-origins * the caller's origin is echoed.",
        json_schema_extra=cli("--cors-credentials", negative=("--no-cors-credentials",),
                              env="LLAMA_ARG_CORS_CREDENTIALS", group=SERVER))
    timeout: int = Field(
        600, ge=1, le=86_400, description="Read/write timeout of a connection, in seconds.",
        json_schema_extra=cli("-to", "--timeout", env="LLAMA_ARG_TIMEOUT", group=SERVER,
                              metavar="N"))
    sleep_idle_seconds: int = Field(
        -1, ge=-1, le=2**31 - 1, description="Free the model after this many idle seconds "
        "and load it again on the next request (-1 = never).",
        json_schema_extra=cli("--sleep-idle-seconds", group=SERVER, metavar="SECONDS"))
    endpoint_slots: bool = Field(
        True, description="Serve GET /slots and slot data in /health?include_slots (they may "
        "contain prompts).",
        json_schema_extra=cli("--slots", negative=("--no-slots", "--slots-endpoint-disable"),
                              env="LLAMA_ARG_ENDPOINT_SLOTS", group=SERVER))
    endpoint_metrics: bool = Field(
        False, description="Serve Prometheus metrics at GET /metrics.",
        json_schema_extra=cli("--metrics", env="LLAMA_ARG_ENDPOINT_METRICS", group=SERVER))
    endpoint_props: bool = Field(
        False, description="Allow POST /props to change server properties.",
        json_schema_extra=cli("--props", env="LLAMA_ARG_ENDPOINT_PROPS", group=SERVER))
    slot_save_path: Path | None = Field(
        None, description="Directory where slot prompt caches are saved and restored; the "
        "slot save/restore endpoints are disabled without it.",
        json_schema_extra=cli("--slot-save-path", group=SERVER, metavar="PATH"))
    media_path: Path | None = Field(
        None, description="Directory from which requests may load media by relative file:// "
        "URLs (default: none).",
        json_schema_extra=cli("--media-path", group=SERVER, metavar="PATH"))

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

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: Any) -> Any:
        origins = split_list(value)
        if not isinstance(origins, list):
            return origins
        out = []
        for origin in origins:
            if not isinstance(origin, str):
                out.append(origin)
                continue
            normal = origin.rstrip("/").lower()
            scheme, sep, rest = normal.partition("://")
            if normal not in ("*", "localhost") and (not sep or not scheme or not rest
                                                      or "/" in rest):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], * or "
                                 "localhost)")
            out.append(normal)
        return out or ["*"]

    @field_validator("api_key_file", "ssl_key_file", "ssl_cert_file")
    @classmethod
    def _server_files_exist(cls, value: Path | None) -> Path | None:
        return existing_file(value)

    @field_validator("media_path", "path")
    @classmethod
    def _existing_directories(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_dir():
            raise ValueError(f"not a directory: {value}")
        return value

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
