"""Exposition of the metrics: an HTTP port or a Unix socket, checked before serving."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler, start_http_server

from appliance.socket_folder import listen_at, make_socket_folder


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class MetricsServer:
    """Serves /metrics over HTTP on `host:port` or on `unix:/path` until closed; a Unix
    socket is mode 0660, in `group` when given (else the process's own group)."""

    def __init__(self, registry: CollectorRegistry, listen: str, *, group: str = "") -> None:
        self.listen = listen
        self._path: Path | None = None
        self._server: Any
        if listen.startswith("unix:"):
            self._path = Path(listen[len("unix:"):])
            gid = check_listen(listen, group=group)
            make_socket_folder(self._path, mode=0o750, gid=gid)  # its scrapers' group
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()  # a stale socket of an earlier run (check_listen)
            self._server = _UnixServer(str(self._path), MetricsHandler.factory(registry),
                                       bind_and_activate=False)
            self._server.socket.close()  # listen_at's, at its path only with its mode
            self._server.socket = listen_at(self._path, 0o660, gid=gid)
            threading.Thread(target=self._server.serve_forever, name="semtrace-metrics",
                             daemon=True).start()
            self.address = f"unix:{self._path}"
        else:
            host, port = parse_listen(listen)
            self._server, _ = start_http_server(port, addr=host, registry=registry)
            self.address = f"{host}:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()


def unreachable(listen: str) -> str | None:
    """Why no scraper can reach a TCP metrics address: this process's network namespace has
    no interface but lo (the unit's PrivateNetwork=yes), so its 127.0.0.1 is its own; None
    for a Unix socket or a namespace with other interfaces."""
    if listen.startswith("unix:"):
        return None
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    if names != ["lo"]:
        return None
    return ("this process has a network of its own whose only interface is lo (the unit's "
            "PrivateNetwork=yes), so nothing outside it can reach that address; serve the "
            "metrics on unix:/run/semtrace/metrics.sock, or give the unit the drop-in its "
            "comments name")


def check_listen(listen: str, *, in_use: bool = True, group: str = "") -> int | None:
    """Refuse, with one sentence (ValueError), a metrics address that cannot be served or
    that would take something over: a Unix socket path that is another kind of file (it
    would be deleted), a folder that cannot be made, and (`in_use`) an address where a
    server already answers (`serve --check` beside the running service skips that); and a
    socket `group` that this host lacks or that this process cannot give a file. Returns
    that group's id (None: the process's own group)."""
    if not listen.startswith("unix:"):
        if group:
            raise ValueError(f"the metrics group {group} is the group of a Unix socket; "
                             "serve the metrics on unix:/path")
        host, port = parse_listen(listen)
        if in_use:
            _try_bind(host, port)
        return None
    gid = socket_group_id(group) if group else None
    path = Path(listen[len("unix:"):])
    if path.is_symlink() or (path.exists() and not path.is_socket()):
        raise ValueError(f"{path} exists and is not a socket; it was left as it is")
    if path.exists() and in_use:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return gid  # stale: nothing answers, it is replaced
        finally:
            probe.close()
        raise ValueError(f"another process already serves on {path}; {ELSEWHERE}")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder")
    return gid


def socket_group_id(group: str) -> int:
    """The id of `group`, which this process may give its files (root, or a member: the
    unit's SupplementaryGroups=); ValueError with one sentence otherwise."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"this host has no group {group} (groupadd --system {group}, or "
                         "install.sh --metrics-group makes it)") from None
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise ValueError(f"this process is not in the group {group}, so it cannot give the "
                         f"socket that group (the unit needs SupplementaryGroups={group}, "
                         "which install.sh --metrics-group writes)")
    return gid


# what to do when the metrics address is taken (or refused, a port under 1024)
ELSEWHERE = ("give another address (`serve --metrics`, or listen under [metrics] in "
             "telemetry.toml), or stop what listens there")


def _try_bind(host: str, port: int) -> None:
    """Bind the address as the HTTP server will (SO_REUSEADDR), then let go."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"{host} is not an address of this host ({exc.strerror or exc})") \
            from None
    family, kind, proto, _, addr = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(addr)
    except OSError as exc:
        raise ValueError(f"{str(exc.strerror or exc).rstrip('.').lower()}; {ELSEWHERE}") \
            from None
    finally:
        probe.close()


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) -> (host, port); ValueError with one sentence."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"'{listen}' is not host:port or unix:/path.")
    return host.strip("[]"), int(port)
