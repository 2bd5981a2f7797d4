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
# An e-mail address, as an audited reason must not hold one (`cli/compliance.py`).
EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
# How reports and warnings state a hold's reason that names a person (never its text).
WITHHELD_REASON = "(withheld: it names the held user or an e-mail address)"


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

    @property
    def names_person(self) -> bool:
        """Whether the reason holds an e-mail address or the hold's own user id (3
        characters or more), which a signed report would keep for good."""
        user = (self.user_id or "").strip().lower()
        return EMAIL.search(self.reason) is not None or (
            len(user) >= 3 and user in self.reason.lower())

    @property
    def stated_reason(self) -> str:
        """The reason as reports and warnings state it."""
        return WITHHELD_REASON if self.names_person else self.reason

    @model_validator(mode="after")
    def _one_user(self) -> LegalHold:
        if self.user_id is not None and self.pseudonym is not None:
            raise ValueError("a legal hold names its user once: by user_id or by pseudonym, "
                             "not both")
        return self


def by_user_id(position: int, *, copy: str = "") -> str:
    """The sentence for a hold (from 1) that names its user by raw user id; `copy`: the
    backup's copy of the policy that names the user by pseudonym instead."""
    head = (f"Legal hold {position} of retention.toml names its user by user_id, a raw user "
            "id on disk outside the encrypted store")
    if copy:
        return (f"{head}: this backup's copy of the policy ({copy}) names the user by "
                "pseudonym instead, as the policy in use should (copy the hold from there).")
    return (f"{head}: name the user by pseudonym instead (pseudonym = \"u_...\": `semtrace "
            "backup` writes it so in its copy of retention.toml, and `retention run "
            "--dry-run --json` prints it as the user of held_buckets).")


class RetentionSettings(Strict):
    default: RetentionClass = RetentionClass()
    tenants: dict[str, RetentionClass] = {}
    legal_holds: list[LegalHold] = []
    schedule_cron: str = "17 * * * *"

    def warnings(self) -> list[str]:
        """What these settings do that they do not say: a hold that keeps a raw user id in
        the policy file, a hold's reason the reports withhold."""
        said = []
        for i, h in enumerate(self.legal_holds):
            if h.user_id is not None:
                said.append(by_user_id(i + 1))
            if h.names_person:
                said.append(f"Legal hold {i + 1} of retention.toml gives a reason that names "
                            "its user or an e-mail address: the signed retention report "
                            "states it as withheld (reword it, e.g. with a ticket number, "
                            "for the report to show it).")
        return said

    @field_validator("schedule_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        return check_crontab("schedule_cron", value, "17 * * * *")
