"""`semtrace serve`'s settings: policies/telemetry.toml and policies/cluster.toml with the
command line's values, one sentence where they are invalid."""

from __future__ import annotations

from typing import Any

import click


def telemetry_settings(base: Any, metrics_listen: str | None, otlp_endpoint: str | None, *,
                       metrics_group: str | None = None) -> Any:
    """policies/telemetry.toml with the command line's addresses (and the metrics socket's
    group); one sentence if invalid."""
    from pydantic import ValidationError

    from appliance.config import TelemetrySettings

    data = base.model_dump()
    if metrics_listen is not None:
        data["metrics"]["listen"] = metrics_listen
    if metrics_group is not None:
        data["metrics"]["socket_group"] = metrics_group
    if otlp_endpoint is not None:
        data["tracing"]["otlp_endpoint"] = otlp_endpoint
    try:
        return TelemetrySettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--otlp-endpoint" if first["loc"][0] != "metrics" else (
            "--metrics-group" if first["loc"][1:] == ("socket_group",) or (
                metrics_group and "socket_group" in first["msg"]) else "--metrics")
        raise click.BadParameter(first["msg"].removeprefix("Value error, "),
                                 param_hint=option) from None


def cluster_settings(base: Any, **given: Any) -> Any:
    """policies/cluster.toml with the command line's values; one sentence if invalid."""
    from pydantic import ValidationError

    from appliance.config import ClusterSettings

    data = base.model_dump()
    data.update({k: v for k, v in given.items() if v is not None})
    try:
        settings = ClusterSettings.model_validate(data)
        settings.owned()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.BadParameter(first["msg"].removeprefix("Value error, "),
                                 param_hint=f"--{first['loc'][0]}".replace("--url", "--nats")
                                 ) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--own") from None
    return settings
