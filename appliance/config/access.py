"""`policies/access.toml`: roles, who may take them, and who may use the socket."""

from __future__ import annotations

from appliance.config.base import Strict


class RoleSettings(Strict):
    description: str = ""
    permissions: list[str]
    uids: list[int] = []  # only these OS users (or members of `gids`) may take the role
    gids: list[int] = []
    tenants: list[str] = []  # the tenants the role sees; [] = all


class AccessSettings(Strict):
    default_role: str = "analyst"
    allow_same_uid: bool = True
    # members of the service's own group (the `semtrace` group of a service install)
    allow_same_gid: bool = True
    socket_uids: list[int] = []
    socket_gids: list[int] = []
    roles: dict[str, RoleSettings]
