"""A consumed prompt leaves JetStream's files at once: an erasure has nothing left there.

A node acknowledged each request it stored; on a work-queue stream the ack removes the
message, but nats-server leaves its bytes in the block file for as long as any other
message of that block waits (here another partition's backlog, whose owner is down). The
erased user's prompt (text, raw user id; sealed with the bus key, which an erasure does not
destroy, or in plain text under `plain_bus`) stayed on NATS's disk after `semtrace erase`.
Now the node overwrites each request it consumed (JetStream's secure delete) before the ack.

A real nats-server (its store read byte by byte) and one `semtrace serve --nats` node that
owns one partition only; the bus in plain text so that the bytes can be looked for.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_cluster import PARTITIONS, TODAY, Node, nats_server
from test_cluster_seal import store_bytes
from test_spine import run_cli

pytestmark = pytest.mark.slow
CANARY = "xylocarpine quorbelt"
WAITING = "glimmerwick valve"


def _other_tenant(tenant: str) -> str:
    """A tenant of another partition than `tenant`'s."""
    from appliance.cluster.partition import partition_of

    return next(t for t in (f"t{i}" for i in range(100))
                if partition_of(t, PARTITIONS) != partition_of(tenant, PARTITIONS))


def _prompt(tenant: str, rid: str, user: str, text: str) -> dict[str, object]:
    return {"v": 1, "op": "ingest", "tenant": tenant, "request_id": rid, "user_id": user,
            "text": text, "ts": TODAY.replace(hour=9).strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_an_erased_users_consumed_prompt_is_not_left_in_jetstreams_files(
        tmp_path: Path) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.cluster.partition import partition_of

    other = _other_tenant("acme")
    with nats_server(tmp_path / "nats") as url:
        store = tmp_path / "nats" / "js"
        assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                       str(tmp_path / "cluster.key")).returncode == 0
        node = Node(tmp_path, "a", url, tmp_path / "cluster.key",
                    str(partition_of("acme", PARTITIONS)), bus_key=None)
        node.launch().wait_up()
        try:
            with NatsClient(url, timeout=120, plain_bus=True) as gateway:
                # waits in the stream: no node owns its partition
                assert gateway.publish(_prompt(other, "w1", "carol",
                                               f"Does the {WAITING} leak?"))["queued"]
                reply = gateway.request(_prompt("acme", "a1", "alice-7731",
                                                f"Is {CANARY} grease fine for my turbine?"))
            assert reply["ok"], reply
            erased = run_cli("erase", "--tenant", "acme", "--user", "alice-7731", "--reason",
                             "ticket 9", *node.args(), env=node.env)
            assert erased.returncode == 0, erased.stderr
            deadline = time.monotonic() + 30
            while WAITING.encode() not in store_bytes(store):  # written through to the files
                assert time.monotonic() < deadline, "JetStream never wrote the waiting prompt"
                time.sleep(0.2)
            stored = store_bytes(store)
            assert WAITING.encode() in stored  # the block the prompts share is still there
            assert CANARY.encode() not in stored and b"alice-7731" not in stored
        finally:
            node.stop()
