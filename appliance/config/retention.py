"""`policies/retention.toml`: how long prompts, vault and aggregates live; legal holds."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from appliance.config.base import Strict, check_crontab

# Longest retention a policy may set: 100 years. Beyond it a date calculation overflows,
# and `inf` is not a period (a tenant kept forever is a legal hold, which the report names).
MAX_DAYS = 36_500
# A user's pseudonym as Semtrace prints it (audit entries, reports, `threads --json`):
# `Keyring.pseudonym`, "u_" and 20 lowercase hex digits.
PSEUDONYM = re.compile(r"u_[0-9a-f]{20}")


class RetentionClass(Strict):
    prompts_days: float = Field(default=30, gt=0, le=MAX_DAYS)
    vault_days: float = Field(default=7, gt=0, le=MAX_DAYS)
    # What outlives shredding (topic words and counts, the rows of shredded buckets) is
    # removed this many days after its last contributor; vectors and thread summaries
    # go with their prompts (same key, same rows).
    aggregates_days: float = Field(default=400, gt=0, le=MAX_DAYS)


class LegalHold(Strict):
    # An empty tenant or user would match nothing: the hold would protect no one.
    tenant: str
    user_id: str | None = None
    # the held user by pseudonym instead, so the policy file need hold no raw user id
    pseudonym: str | None = None
    reason: str = ""

    @field_validator("tenant", "user_id")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty: a legal hold on no one protects no one")
        return value

    @field_validator("pseudonym")
    @classmethod
    def _pseudonym(cls, value: str | None) -> str | None:
        # the value is not echoed: a raw user id put here by mistake stays out of the logs
        if value is not None and PSEUDONYM.fullmatch(value) is None:
            raise ValueError("is not a pseudonym as Semtrace prints them ('u_' and 20 "
                             "lowercase hex digits, as audit entries and reports name users)")
        return value

    @model_validator(mode="after")
    def _one_user(self) -> LegalHold:
        if self.user_id is not None and self.pseudonym is not None:
            raise ValueError("a legal hold names its user once: by user_id or by pseudonym, "
                             "not both")
        return self


class RetentionSettings(Strict):
    default: RetentionClass = RetentionClass()
    tenants: dict[str, RetentionClass] = {}
    legal_holds: list[LegalHold] = []
    schedule_cron: str = "17 * * * *"

    @field_validator("schedule_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        return check_crontab("schedule_cron", value, "17 * * * *")
