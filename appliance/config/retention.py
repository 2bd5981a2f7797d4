"""`policies/retention.toml`: how long prompts, vault and aggregates live; legal holds."""

from __future__ import annotations

from pydantic import Field

from appliance.config.base import Strict


class RetentionClass(Strict):
    prompts_days: float = Field(default=30, gt=0)
    vault_days: float = Field(default=7, gt=0)
    # What outlives shredding (topic words and counts, the rows of shredded buckets) is
    # removed this many days after its last contributor; vectors and thread summaries
    # go with their prompts (same key, same rows).
    aggregates_days: float = Field(default=400, gt=0)


class LegalHold(Strict):
    tenant: str
    user_id: str | None = None
    reason: str = ""


class RetentionSettings(Strict):
    default: RetentionClass = RetentionClass()
    tenants: dict[str, RetentionClass] = {}
    legal_holds: list[LegalHold] = []
    schedule_cron: str = "17 * * * *"
