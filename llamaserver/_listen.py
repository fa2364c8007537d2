"""The sockets ``LlamaServer.serve_async`` listens on: one per ``--host`` entry.

A TCP entry is bound to ``--port``; an entry ending in ``.sock`` (or ``unix:PATH``) is a unix
socket.  The sockets are bound here, before hypercorn starts, so that a taken port is an
error at once and ``--port 0`` can report the port the system chose.  hypercorn receives
duplicates of the descriptors (``fd://N``) and closes those; :meth:`Listener.close` closes
the originals and removes a unix socket's file.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from .settings import ServerSettings
from .settings.network import is_unix_socket

__all__ = ["Listener", "open_listeners"]

_BACKLOG = 128
_WILDCARDS = ("", "0.0.0.0", "::")


@dataclass
class Listener:
    sock: socket.socket
    url: str
    unix_path: Path | None = None

    def hypercorn_bind(self) -> str:
        return f"fd://{os.dup(self.sock.fileno())}"

    def close(self) -> None:
        self.sock.close()
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                self.unix_path.unlink()


def open_listeners(settings: ServerSettings) -> list[Listener]:
    """Bind every --host entry (OSError naming the address if one cannot be bound)."""
    scheme = "https" if settings.ssl_cert_file else "http"
    tcp_hosts = [h for h in settings.hosts if not is_unix_socket(h)]
    listeners: list[Listener] = []
    try:
        for host in settings.hosts:
            if is_unix_socket(host):
                listeners.append(_unix(Path(host.removeprefix("unix:")), scheme))
            else:
                # several TCP addresses: "::" must not also take 0.0.0.0 (as llama-server)
                listeners.append(_tcp(host, settings, scheme, v6only=len(tcp_hosts) > 1))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _tcp(host: str, settings: ServerSettings, scheme: str, *, v6only: bool) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if settings.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        sock.bind((host, settings.port))
        _listen(sock)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host} port {settings.port}: "
                                 f"{exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    shown = host if host not in _WILDCARDS else sock.getsockname()[0]
    if ":" in shown:
        shown = f"[{shown}]"
    return Listener(sock, f"{scheme}://{shown}:{sock.getsockname()[1]}{settings.api_prefix}")


def _unix(path: Path, scheme: str) -> Listener:
    path = path.expanduser()
    with contextlib.suppress(FileNotFoundError):
        # A socket file left by a server that died is replaced; any other file is kept.
        if not stat.S_ISSOCK(path.stat().st_mode):
            raise OSError(f"cannot listen on {path}: it exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        _listen(sock)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return Listener(sock, f"{scheme}+unix://{path}", unix_path=path)


def _listen(sock: socket.socket) -> None:
    sock.listen(_BACKLOG)
    sock.setblocking(False)
    sock.set_inheritable(True)
