"""What a node's log says when its connection to NATS drops and when it comes back.

Before, an operator whose nats-server went away read only `owner heartbeat failed`, one
line per partition every `owner_ttl_s / 3` seconds for as long as it lasted, and nothing at
all when the node was back: nothing said what the node does meanwhile, nor that it
recovered. Now one warning when the connection drops, one line when it is back."""

from __future__ import annotations

import logging
import time
from typing import Any

from appliance.config.cluster import shown_url

log = logging.getLogger("semtrace.cluster")


class Outage:
    """nats-py's disconnected and reconnected callbacks of one node's connection."""

    def __init__(self, url: str, node: str) -> None:
        self.url, self.node = shown_url(url), node
        self.closing = False  # set before the node closes its connection: no outage then
        self._since: float | None = None

    def callbacks(self) -> dict[str, Any]:
        """The keyword arguments of nats-py's `connect` that report to this object."""
        return {"disconnected_cb": self.disconnected, "reconnected_cb": self.reconnected}

    async def disconnected(self) -> None:
        if self.closing or self._since is not None:
            return
        self._since = time.monotonic()
        log.warning(f"The connection to NATS at {self.url} dropped: this node reconnects "
                    "without limit; meanwhile its socket still stores its own tenants' "
                    "prompts and answers other nodes' `not_forwarded`, and prompts sent over "
                    "NATS wait in JetStream.", extra={"event": "nats_disconnected",
                                                      "node": self.node})

    async def reconnected(self) -> None:
        if self._since is None:
            return
        down = time.monotonic() - self._since
        self._since = None
        log.info(f"Reconnected to NATS at {self.url} after {down:.0f} s; this node consumes "
                 "its partitions again.", extra={"event": "nats_reconnected",
                                                  "node": self.node, "down_s": round(down, 1)})
