"""The base of every settings model: unknown keys refused, values frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A settings model: a key it does not know is an error; values cannot change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
