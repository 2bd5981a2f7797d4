"""Roles from policies/access.toml: which role may do what, who may take it, which tenants
it sees. Pure.

A role that lists `uids` or `gids` is taken only by those OS identities (the caller's
uid, primary and supplementary groups: the process's own for the CLI and TUI, the
peer's SO_PEERCRED for a socket). A role that lists neither is open to whoever can
open the store. A role that lists `tenants` sees only those tenants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from appliance.config import AccessSettings
from appliance.errors import AccessDenied
from appliance.words import named


@dataclass(frozen=True)
class Caller:
    """An OS identity asking for something."""

    uid: int
    gids: frozenset[int]


def this_process() -> Caller:
    """The identity of the running process (uid, primary and supplementary groups)."""
    return Caller(os.getuid(), frozenset({os.getgid(), *os.getgroups()}))


def resolve_role(access: AccessSettings, role: str | None) -> str:
    """The role to act under (the policy's default when none is named)."""
    name = role or access.default_role
    if name not in access.roles:
        raise AccessDenied(f"Unknown role {name!r}; roles: "  # quoted: never drawn raw
                           f"{', '.join(sorted(access.roles))}.")
    return name


def may_take(access: AccessSettings, role: str, caller: Caller) -> bool:
    """Whether this identity may act under `role` (its uids/gids, when it lists any)."""
    r = access.roles[role]
    if not r.uids and not r.gids:
        return True
    return caller.uid in r.uids or bool(caller.gids & set(r.gids))


def allowed(access: AccessSettings, role: str, permission: str) -> bool:
    return role in access.roles and permission in access.roles[role].permissions


def require(access: AccessSettings, role: str | None, permission: str, *,
            caller: Caller | None = None, tenant: str | None = None,
            every_tenant: str | None = None) -> str:
    """The role, if this caller may take it, it holds `permission` and it sees `tenant`
    (with `every_tenant`, naming a store-wide job: every tenant); AccessDenied (one
    sentence) otherwise."""
    name = resolve_role(access, role)
    who = caller or this_process()
    if not may_take(access, name, who):
        raise AccessDenied(f"The {name} role is bound to other users and groups in "
                           f"access.toml; uid {who.uid} may not take it.")
    if not allowed(access, name, permission):
        raise AccessDenied(f"The {name} role does not have the '{permission}' permission in "
                           "access.toml; use --role with a role that has it.")
    if tenant is not None and not sees(access, name, tenant):
        raise AccessDenied(f"The {name} role is limited to "
                           f"{named('tenant', list(access.roles[name].tenants))}.")
    if every_tenant is not None and access.roles[name].tenants:
        raise AccessDenied(f"The {name} role is limited to "
                           f"{named('tenant', list(access.roles[name].tenants))}, and "
                           f"{every_tenant} covers every tenant; use --role with a role that is "
                           "not limited.")
    return name


def sees(access: AccessSettings, role: str, tenant: str) -> bool:
    """Whether `role` may see `tenant` (all tenants unless it lists some)."""
    bound = access.roles[role].tenants
    return not bound or tenant in bound


def bound_tenants(access: AccessSettings, role: str) -> list[str] | None:
    """The tenants a role is limited to (None: all)."""
    return list(access.roles[role].tenants) or None
