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
