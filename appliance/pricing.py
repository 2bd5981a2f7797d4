"""What one model call cost: the gateway's figure, else tokens priced by `pricing.toml`. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import ModelPrice, PricingSettings


@dataclass(frozen=True)
class Cost:
    """A call's cost in the pricing currency and where it came from."""

    amount: float
    source: str  # "reported" (by the gateway) or "priced" (tokens x pricing.toml)


COST_DECIMALS = 10  # far below any price: a token at $0.01 a million is 1e-8


def as_read(amount: float | None) -> float | None:
    """A stored cost or sum of costs as shown: binary floats add up with noise (three turns
    of 0.1 summed to 0.30000000000000004, a 150-turn thread of 0.001 to 0.1500000000000001,
    which `threads list --json` printed); rounded to COST_DECIMALS, None kept."""
    return None if amount is None else round(amount, COST_DECIMALS)


def split_model(model: str) -> tuple[str, str]:
    """("openai", "gpt-4o") from "openai/gpt-4o"; ("", "gpt-4o") from a bare name."""
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else ("", model)


def find_price(pricing: PricingSettings, model: str | None) -> ModelPrice | None:
    """The price entry of a model: exact provider, else one without provider, else the only
    entry of that name when the gateway named no provider; None when not listed."""
    if not model:
        return None
    provider, name = split_model(model.strip())
    named = [m for m in pricing.models if m.model == name]
    for wanted in (provider, ""):
        hit = next((m for m in named if m.provider == wanted), None)
        if hit is not None:
            return hit
    return named[0] if not provider and len(named) == 1 else None


def price(pricing: PricingSettings, model: str | None, input_tokens: int | None,
          output_tokens: int | None) -> float | None:
    """Tokens times the model's list prices; None when the model or every count is unknown."""
    entry = find_price(pricing, model)
    if entry is None or (input_tokens is None and output_tokens is None):
        return None
    return ((input_tokens or 0) * entry.input_per_million
            + (output_tokens or 0) * entry.output_per_million) / 1_000_000


def call_cost(pricing: PricingSettings, model: str | None, input_tokens: int | None,
              output_tokens: int | None, reported: float | None) -> Cost | None:
    """The gateway's reported cost when it sent one, else the priced tokens, else None."""
    if reported is not None:
        return Cost(float(reported), "reported")
    amount = price(pricing, model, input_tokens, output_tokens)
    return Cost(amount, "priced") if amount is not None else None
