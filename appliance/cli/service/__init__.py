"""`semtrace serve | send`: the ingest service and its command-line client."""

from __future__ import annotations

from appliance.cli.service.client import _requests, send
from appliance.cli.service.daemon import SOCKET_NAME, serve
from appliance.cli.service.settings import cluster_settings, telemetry_settings

__all__ = ["COMMANDS", "SOCKET_NAME", "_requests", "cluster_settings", "send", "serve",
           "telemetry_settings"]

COMMANDS = [serve, send]
