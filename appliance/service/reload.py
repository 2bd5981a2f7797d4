"""What a SIGHUP policy reload applies live and what needs a restart (pure)."""

from __future__ import annotations

from typing import Any

from appliance.config import Policies

# Policy keys a running service takes on SIGHUP; every other change needs a restart
# (the pipeline, redactor, queue, frame limit and schedule are built at start).
LIVE_KEYS = ("access.", "retention.default", "retention.tenants", "retention.legal_holds",
             "service.batch_max",
             "service.inflight_per_connection", "service.idle_timeout_s",
             "service.busy_retry_after_ms", "service.max_connections", "service.ts_past_days",
             "service.ts_future_s")


def _leaves(data: dict[str, Any]) -> dict[str, Any]:
    """`section.key` -> value (the second level is the unit of a reload)."""
    return {f"{section}.{key}": value for section, keys in data.items()
            for key, value in keys.items()}


def reload_plan(current: Policies, new: Policies) -> tuple[Policies, list[str]]:
    """What a reload applies: the live keys from `new`, the rest as running; and the
    changed keys that need a restart (pure)."""
    old, fresh = _leaves(current.model_dump()), _leaves(new.model_dump())
    changed = [k for k in fresh if fresh[k] != old.get(k)]
    restart = sorted(k for k in changed if not k.startswith(LIVE_KEYS))
    merged = current.model_dump()
    for key in changed:
        if key not in restart:
            section, name = key.split(".", 1)
            merged[section][name] = fresh[key]
    return Policies.model_validate(merged), restart


def audited_change(current: Policies, applied: Policies) -> dict[str, Any] | None:
    """The audit entry's details for a reload that changed who may do what or what is
    kept (access, retention periods, legal holds): the keys, never their values (a legal
    hold names a user); None when neither changed (pure)."""
    old, fresh = _leaves(current.model_dump()), _leaves(applied.model_dump())
    keys = sorted(k for k in fresh if k.startswith(("access.", "retention."))
                  and fresh[k] != old.get(k))
    if not keys:
        return None
    return {"change": "policy reload", "keys": keys,
            "legal_holds": len(applied.retention.legal_holds)}
