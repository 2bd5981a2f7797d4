"""`policies/telemetry.toml`: spans, Prometheus metrics and request logs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from appliance.config.base import Strict

_LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")
# a POSIX group name as useradd/groupadd take it (it is also written into the unit's lines)
GROUP_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class TracingSettings(Strict):
    """OpenTelemetry spans; exported over OTLP/HTTP only when `otlp_endpoint` is set."""

    otlp_endpoint: str = ""  # e.g. "http://127.0.0.1:4318/v1/traces"; "" = no export
    service_name: str = Field(default="semtrace", min_length=1, max_length=64)

    @field_validator("otlp_endpoint")
    @classmethod
    def _same_host(cls, value: str) -> str:
        if value and (urlsplit(value).scheme not in ("http", "https")
                      or urlsplit(value).hostname not in _LOOPBACK):
            raise ValueError("must be an http(s) URL of a collector on this host "
                             "(127.0.0.1, ::1 or localhost), or empty")
        return value


class MetricsSettings(Strict):
    """Prometheus exposition; off unless `listen` is set."""

    listen: str = ""  # "127.0.0.1:9464" or "unix:/run/semtrace/metrics.sock"; "" = off
    # the Unix socket's group: "" = the service's own (whose members may also send prompts
    # on the ingest socket); a group of its own lets a scraper read metrics and nothing else
    socket_group: str = ""
    tenant_labels: int = Field(default=20, ge=0, le=1000)  # largest tenants labelled by name
    agreement_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    agreement_window: int = Field(default=500, ge=10, le=100_000)

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value.startswith("unix:"):
            if not value[5:].startswith("/"):
                raise ValueError("a Unix socket must be an absolute path: unix:/path")
        elif value and (not sep or not host or not port.isdigit() or int(port) > 65535):
            raise ValueError("must be host:port, unix:/path, or empty")
        return value

    @field_validator("socket_group")
    @classmethod
    def _group(cls, value: str) -> str:
        if value and not GROUP_NAME.fullmatch(value):
            raise ValueError("must be a group name (lower-case letters, digits, _ and -, "
                             "at most 32, not starting with a digit or -), or empty")
        return value

    @model_validator(mode="after")
    def _group_needs_a_socket(self) -> MetricsSettings:
        if self.socket_group and not self.listen.startswith("unix:"):
            raise ValueError("socket_group (serve --metrics-group) is the group of a Unix "
                             "socket: it needs listen = \"unix:/path\" (--metrics unix:/path)")
        return self


class LogSettings(Strict):
    each_request: bool = True  # one `ingested` line per prompt (ids only, never text)


class TelemetrySettings(Strict):
    """`policies/telemetry.toml` (optional: defaults export nothing)."""

    tracing: TracingSettings = TracingSettings()
    metrics: MetricsSettings = MetricsSettings()
    logs: LogSettings = LogSettings()
