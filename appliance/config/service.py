"""`policies/service.toml`: the socket server's limits, batching and durability."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.config.base import Strict


class ServiceSettings(Strict):
    max_frame_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    queue_max: int = Field(default=2048, ge=1)
    batch_max: int = Field(default=64, ge=1, le=4096)
    inflight_per_connection: int = Field(default=256, ge=1)
    idle_timeout_s: float = Field(default=600.0, gt=0)
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_retry_after_ms: int = Field(default=50, ge=1)
    # Connections open at once; one more is answered `busy` and closed.
    max_connections: int = Field(default=256, ge=1, le=65536)
    # An ingest's `ts` must lie within this window around the service's clock.
    ts_past_days: float = Field(default=365.0, gt=0, le=3650)
    ts_future_s: float = Field(default=300.0, ge=0, le=86400)
