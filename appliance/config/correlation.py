"""`policies/correlation.toml`: the linker's and the embedder's settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from appliance.config.base import Strict


class EmbeddingSettings(Strict):
    threads: int = Field(default=1, ge=1, le=64)
    max_tokens: int = Field(default=256, ge=16, le=512)
    n_batch: int = Field(default=512, ge=32, le=4096)
    # Prompts packed into one llama.cpp decode, in tokens (64 measured fastest here).
    pack_tokens: int = Field(default=64, ge=1, le=4096)


class CalibrationSettings(Strict):
    # Learn each tenant's link threshold from its history-linked traffic (link/calibrate.py).
    enabled: bool = True
    # Decisions tallied before a tenant's threshold may move off `link_threshold`.
    min_decisions: int = Field(default=100, ge=1, le=1_000_000)
    # ... and of them, continuations and new conversations each (a tally of 11 continuations
    # and 96 new conversations says little about where continuations score).
    min_each_side: int = Field(default=10, ge=1, le=1_000_000)
    # A rising threshold moves m / (m + shrink_continuations) of the way from `link_threshold`
    # to the tally's best, m the continuations tallied (a few say little about where
    # continuations score); a falling one m / (m + shrink_new), m the new conversations.
    # 0: all the way (docs/linking.md, "One-sided tallies", measured both).
    shrink_continuations: float = Field(default=10.0, ge=0.0, le=1_000_000.0)
    shrink_new: float = Field(default=0.0, ge=0.0, le=1_000_000.0)
    # Tenants whose link threshold the operator fixes (`[calibration.pinned]`, tenant =
    # threshold): used whatever the policy threshold or the tally says.
    pinned: dict[str, float] = {}

    @field_validator("pinned")
    @classmethod
    def _pinned(cls, value: dict[str, float]) -> dict[str, float]:
        for tenant, threshold in value.items():
            if not tenant.strip():
                raise ValueError("a pinned threshold names no tenant (an empty key)")
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"the pinned threshold of tenant {tenant!r} is {threshold:g}; "
                                 "it must be between 0 and 1")
        return value


class CorrelationSettings(Strict):
    horizon_hours: float = Field(default=72.0, gt=0, le=24 * 90)
    max_candidates: int = Field(default=200, ge=1, le=10_000)
    max_text_chars: int = Field(default=32_768, ge=64)
    weights_file: str = "linker-weights.json"
    link_threshold: float = Field(default=0.55, ge=0.0, le=1.0)
    topic_shift_similarity: float = Field(default=0.25, ge=-1.0, le=1.0)
    topic_shift_opener: float = Field(default=0.6, ge=0.0, le=1.0)
    orphan_threshold: float = Field(default=0.2, ge=0.0, le=1.0)
    # Linker shortlist: cosine is computed over the newest `scan_candidates` turns; the
    # newest `recent_candidates` turns (and latest turn of as many recent threads) plus
    # the `similar_candidates` most similar turns are scored in full.
    scan_candidates: int = Field(default=2_000, ge=1, le=1_000_000)
    recent_candidates: int = Field(default=12, ge=1, le=1000)
    similar_candidates: int = Field(default=8, ge=1, le=1000)
    embedding: EmbeddingSettings = EmbeddingSettings()
    calibration: CalibrationSettings = CalibrationSettings()
