"""The query socket: readers (CLI, TUI) ask the service, which holds the key, so an analyst
needs no master passphrase. Each request runs under the role the peer's OS identity may
take (SO_PEERCRED, supplementary groups included), limited to the role's tenants.

Requests are NDJSON like the ingest protocol: `{"v":1, "op":"threads", "role", "tenant",
"user", "limit"}` lists threads (newest first); `{"v":1, "op":"thread", "role",
"thread_id"}` shows one. Over this socket a role that lists no uids/gids is the service
owner's only: whoever reaches the socket gets nothing by naming it.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from appliance.config import AccessSettings
from appliance.errors import AccessDenied
from appliance.keys import Keyring
from appliance.protocol import ProtocolError
from appliance.query import ThreadFilter, get_thread, list_threads
from appliance.roles import Caller, bound_tenants, require, resolve_role, sees
from appliance.store import Store

QUERY_OPS = ("threads", "thread")
MAX_LIMIT = 10_000


def jsonable(obj: Any) -> Any:
    """Dataclasses, datetimes and tuples as plain JSON values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, datetime):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def authorize(access: AccessSettings, obj: dict[str, Any], caller: Caller, *,
              owner_uid: int) -> str:
    """The role a query runs under, or ProtocolError `forbidden` (pure)."""
    role = obj.get("role")
    if role is not None and not isinstance(role, str):
        raise ProtocolError("bad_request", "'role' must be a string.")
    tenant = obj.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise ProtocolError("bad_request", "'tenant' must be a string.")
    try:
        name = resolve_role(access, role)
        r = access.roles[name]
        if not r.uids and not r.gids and caller.uid != owner_uid:
            raise AccessDenied(f"The {name} role binds no uids or gids in access.toml; over "
                               "the query socket only the service's own user may take it.")
        return require(access, name, "threads:read", caller=caller, tenant=tenant)
    except AccessDenied as exc:
        raise ProtocolError("forbidden", str(exc)) from None


def answer(obj: dict[str, Any], role: str, access: AccessSettings, store: Store,
           keyring: Keyring) -> dict[str, Any]:
    """The reply to an authorized query (runs on the worker thread)."""
    rid = obj.get("request_id") if isinstance(obj.get("request_id"), str) else None
    bound = bound_tenants(access, role)
    if obj.get("op") == "thread":
        thread_id = obj.get("thread_id")
        if not isinstance(thread_id, str) or not thread_id:
            raise ProtocolError("bad_request", "'thread_id' must be a non-empty string.", rid)
        thread = get_thread(store, thread_id)
        if thread is None or not sees(access, role, thread.tenant):
            raise ProtocolError("not_found", "No thread with this id in scope.", rid)
        return {"request_id": rid, "ok": True, "role": role, "thread": jsonable(thread)}
    tenant, user, limit = obj.get("tenant"), obj.get("user"), obj.get("limit", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ProtocolError("bad_request", f"'limit' must be an integer from 1 to {MAX_LIMIT}.",
                            rid)
    if user is not None and (not isinstance(user, str) or tenant is None):
        raise ProtocolError("bad_request", "'user' must be a string, with 'tenant'.", rid)
    if tenant is None and bound is not None and len(bound) == 1:
        tenant = bound[0]
    pseudo = keyring.pseudonym(tenant, user) if user is not None and tenant else None
    rows = [t for t in list_threads(store, ThreadFilter(tenant=tenant, user=pseudo),
                                    limit=limit) if bound is None or t.tenant in bound]
    return {"request_id": rid, "ok": True, "role": role, "threads": jsonable(rows)}
