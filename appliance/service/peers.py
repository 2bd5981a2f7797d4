"""Who is on the other end of a Unix socket, and whether they may use it."""

from __future__ import annotations

import os
import pwd
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.config import AccessSettings


def peer_allowed(uid: int, gids: Iterable[int], access: AccessSettings, *,
                 own_uid: int, own_gid: int | None = None) -> bool:
    """Whether a peer with these credentials (primary and supplementary groups) may use the
    socket (pure policy)."""
    if access.allow_same_uid and uid == own_uid:
        return True
    peer_gids = set(gids)
    if access.allow_same_gid and own_gid is not None and own_gid in peer_gids:
        return True
    return uid in access.socket_uids or bool(peer_gids & set(access.socket_gids))


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a Unix socket, as the kernel says."""

    pid: int
    uid: int
    gids: frozenset[int]  # primary and supplementary


def peer_credentials(sock: socket.socket) -> Peer:
    """The peer's pid, uid and groups: SO_PEERCRED, plus the supplementary groups the
    kernel lists for that pid (or, when /proc cannot say, the user's groups in /etc/group)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, frozenset({gid, *supplementary_groups(pid, uid, gid)}))


def supplementary_groups(pid: int, uid: int, gid: int) -> set[int]:
    """A process's supplementary groups from /proc/PID/status, else its user's groups."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    try:
        return set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        return set()
