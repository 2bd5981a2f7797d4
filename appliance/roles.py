"""Roles from policies/access.toml: which role may do what. Pure."""

from __future__ import annotations

from appliance.config import AccessSettings
from appliance.errors import AccessDenied


def resolve_role(access: AccessSettings, role: str | None) -> str:
    """The role to act under (the policy's default when none is named)."""
    name = role or access.default_role
    if name not in access.roles:
        raise AccessDenied(f"Unknown role '{name}'; roles: {', '.join(sorted(access.roles))}.")
    return name


def allowed(access: AccessSettings, role: str, permission: str) -> bool:
    return role in access.roles and permission in access.roles[role].permissions


def require(access: AccessSettings, role: str | None, permission: str) -> str:
    """The role, if it holds `permission`; AccessDenied (one sentence) otherwise."""
    name = resolve_role(access, role)
    if not allowed(access, name, permission):
        raise AccessDenied(f"The {name} role may not {permission.replace(':', ' ')}; "
                           "use --role with a role that may.")
    return name
