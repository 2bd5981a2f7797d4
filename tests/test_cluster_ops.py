"""What a platform engineer running a cluster sees: a real nats-server, real nodes.

Requests to a server that nothing listens on yet, and a node whose owner claim
another node took while it was cut off from NATS.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cluster import nats_server

pytestmark = pytest.mark.slow


def test_a_request_nothing_takes_says_it_was_not_queued(tmp_path: Path) -> None:
    """No stream yet (no node ever started): NATS answers 'no responders' at once, and the
    gateway must not say that the prompt waits on the bus."""
    from appliance.cluster.client import NatsClient
    from appliance.errors import SemtraceError
    from appliance.keys.bus import create_key_file, load_bus_keys

    create_key_file(tmp_path / "bus.key")
    with nats_server(tmp_path / "nats") as url, \
            NatsClient(url, timeout=30, bus_keys=load_bus_keys(tmp_path / "bus.key")) as gw, \
            pytest.raises(SemtraceError) as refused:
        gw.request({"v": 1, "op": "ingest", "tenant": "acme", "request_id": "r-1",
                    "user_id": "ana", "text": "Where is my parcel?"})
    message = str(refused.value)
    assert "was not queued" in message and "stays queued" not in message
    assert "semtrace cluster nats-config" in message and "\n" not in message
