"""`policies/pricing.toml`: list prices of models, for calls the gateway sends no cost."""

from __future__ import annotations

from pydantic import Field, field_validator

from appliance.config.base import Strict


class ModelPrice(Strict):
    """List prices of one model, per million tokens, in `PricingSettings.currency`."""

    provider: str = Field(default="", max_length=64)  # "" = whichever provider serves it
    model: str = Field(min_length=1, max_length=256)
    input_per_million: float = Field(ge=0, le=1_000_000)
    output_per_million: float = Field(ge=0, le=1_000_000)

    @field_validator("provider", "model")
    @classmethod
    def _bare(cls, value: str) -> str:
        if "/" in value or value != value.strip():
            raise ValueError("must be a bare name without '/' or surrounding spaces")
        return value


class PricingSettings(Strict):
    """`policies/pricing.toml` (optional): what a call costs when the gateway says nothing."""

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")  # ISO 4217
    # Cross-user cost sums clip each thread's cost to this (the sensitivity of a sum).
    thread_cost_bound: float = Field(default=1.0, gt=0, le=1_000_000)
    models: list[ModelPrice] = []

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[ModelPrice]) -> list[ModelPrice]:
        seen = set()
        for m in value:
            key = (m.provider, m.model)
            if key in seen:
                raise ValueError(f"lists {'/'.join(filter(None, key))} twice")
            seen.add(key)
        return value
