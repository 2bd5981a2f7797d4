"""`policies/redaction.toml`: what is redacted, how, and by which recognisers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from appliance.config.base import Strict


class RecognizerPattern(Strict):
    name: str
    regex: str
    score: float = Field(default=0.8, ge=0.0, le=1.0)


class CustomRecognizer(Strict):
    entity: str
    patterns: list[RecognizerPattern]
    context: list[str] = []


# Every type the redactor can find when all its recognisers are on: Presidio's English
# recognisers (spaCy's included) and Semtrace's own (handles are USERNAME). A policy's
# `custom` recognisers add their own types. tests/test_redact.py checks this against the
# built analyser, so a Presidio upgrade that changes the set fails there.
REDACTABLE_TYPES = frozenset({
    "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS",
    "LOCATION", "MAC_ADDRESS", "MEDICAL_LICENSE", "NRP", "ORGANIZATION", "PERSON",
    "PHONE_NUMBER", "UK_NHS", "URL", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "US_PASSPORT", "US_SSN", "USERNAME", "UUID",
})


# Without `wall_timeout_s`, the wall-clock guard is this many times `pattern_timeout_s`.
DEFAULT_WALL_FACTOR = 10.0


class RedactionSettings(Strict):
    entities: list[str]
    score_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    operator: Literal["placeholder", "mask"] = "placeholder"
    spacy_model: str = "en_core_web_md"
    custom: list[CustomRecognizer] = []
    allow_list: list[str] = []
    # Names ranking within this many in some country (names-dataset) feed the
    # name recogniser; 0 turns the name and place lists off.
    name_list_rank: int = Field(default=1000, ge=0, le=20000)
    # Seconds of CPU time the whole redaction of one prompt may cost the thread redacting it
    # (its share of spaCy, every recogniser, Presidio's and Semtrace's, their expressions and
    # loops; time waiting for a core is not charged, but the wall-clock guard below is kept);
    # past it the prompt is refused (appliance/redact/budget.py), never stored partly
    # redacted.
    pattern_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)
    # Wall-clock seconds one prompt's redaction may hold the ingest worker, waiting for a
    # core included, before it is refused all the same (the host gave it too little CPU).
    # None: `DEFAULT_WALL_FACTOR` times pattern_timeout_s. Never under pattern_timeout_s (a
    # thread's CPU time never exceeds its wall-clock time, so the budget could not be spent).
    wall_timeout_s: float | None = Field(default=None, gt=0.0, le=600.0)

    @model_validator(mode="after")
    def _wall_guard_covers_the_budget(self) -> RedactionSettings:
        """A guard shorter than the CPU budget would refuse prompts the budget allows."""
        if self.wall_timeout_s is not None and self.wall_timeout_s < self.pattern_timeout_s:
            raise ValueError(
                f"`wall_timeout_s` ({self.wall_timeout_s:g} s) is less than "
                f"`pattern_timeout_s` ({self.pattern_timeout_s:g} s), so the wall-clock guard "
                "would refuse prompts before they could spend their CPU budget (set it to at "
                "least pattern_timeout_s, or leave it out for "
                f"{DEFAULT_WALL_FACTOR:g} x pattern_timeout_s)")
        return self

    @model_validator(mode="after")
    def _entities_are_known(self) -> RedactionSettings:
        """A type no recogniser finds (a misspelt "LOCATON") would silently redact nothing."""
        known = REDACTABLE_TYPES | {c.entity for c in self.custom}
        unknown = [name for name in self.entities if name not in known]
        if unknown:
            raise ValueError(
                f"`entities` lists {', '.join(unknown)}, which no recogniser finds, so "
                f"nothing would be redacted as {'it' if len(unknown) == 1 else 'them'} "
                f"(misspelt? the types are {', '.join(sorted(known))})")
        return self

    def nationality_as_location(self) -> bool:
        """Whether nationality words are redacted as LOCATION rather than NRP.

        They were LOCATION until they got their own type (NRP): a policy that
        lists LOCATION but not NRP, as every policy did before, keeps them
        redacted, under the type it names.
        """
        return "LOCATION" in self.entities and "NRP" not in self.entities

    def warnings(self) -> list[str]:
        """Sentences on what this policy does that its `entities` alone do not say."""
        if self.name_list_rank == 0:
            # Nationality words are found only with the word lists (DemonymRecognizer).
            if "NRP" not in self.entities:
                return []
            return ['The redaction policy lists NRP in `entities` but sets '
                    '`name_list_rank = 0`, which switches off the word lists that '
                    'nationality words are found with: nothing is redacted as NRP '
                    '("Israeli", "Irish" stay in the clear).']
        if self.nationality_as_location():
            return ['The redaction policy lists LOCATION but not NRP in `entities`: '
                    'nationality words ("Israeli", "Irish") are redacted as <LOCATION>, '
                    'as before they had a type of their own; add "NRP" to `entities` '
                    'to redact them as <NRP>.']
        return []
