"""An erasure asked of a tenant's owner that answers in a later, incompatible wire version
(its `"v"` above this node's: docs/scale-out.md, rolling upgrades). The asking node cannot
read the answer; it used to wait out `--wait` and report the erasure pending (exit 8), as
if the owner had not seen it. Now it says in one sentence that the owner answered in a
wire version it cannot read (upgrade this node), with its own outcome in `--json` and in
the audit entry. Over a real nats-server, the owner played by a script."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_cluster import PARTITIONS, Node, nats_server
from test_spine import run_cli

from appliance.cluster.erasures import erasures_bucket
from appliance.cluster.owners import owners_bucket
from appliance.cluster.partition import partition_of

pytestmark = pytest.mark.slow


async def _claim(url: str, node: str, tenant: str) -> None:
    """A live claim of the tenant's partition by `node`, as a node writes it."""
    import nats

    nc = await nats.connect(url)
    kv = await owners_bucket(nc.jetstream(), ttl_s=600, replicas=1)
    now = time.time()
    await kv.put(f"p{partition_of(tenant, PARTITIONS)}",
                 json.dumps({"node": node, "since": now, "refreshed": now}).encode())
    await nc.close()


async def _later_owner(url: str, answered: list[dict[str, Any]]) -> None:
    """Wait for an erasure request and answer it as a wire-version-2 node would."""
    import nats
    from nats.js.errors import BucketNotFoundError, NoKeysError

    nc = await nats.connect(url)
    try:
        for _ in range(600):
            try:
                kv = await nc.jetstream().key_value("semtrace_erasures")
                keys = await kv.keys()
            except (BucketNotFoundError, NoKeysError):
                await asyncio.sleep(0.1)
                continue
            asked = json.loads((await kv.get(keys[0])).value)
            answer = {"v": 2, "request": asked["request"],
                      "outcome": {"by": "a", "erased": {"records": 1, "buckets": 1}}}
            await kv.put(keys[0], json.dumps(answer).encode())
            answered.append(answer)
            return
    finally:
        await nc.close()


@contextmanager
def _asking_node(tmp_path: Path) -> Iterator[tuple[str, Node]]:
    """A fresh nats-server (its url) and node 'b' of the cluster, which only asks: acme is
    claimed by node 'a', played by the tests."""
    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        b = Node(tmp_path, "b", url, key, "0", bus_key=None)  # it only asks
        asyncio.run(_claim(url, "a", "acme"))
        yield url, b


def test_an_owners_answer_of_a_later_wire_version_is_said_not_reported_pending(
        tmp_path: Path) -> None:
    with _asking_node(tmp_path) as (url, b):
        answers: list[str] = []
        for extra in ((), ("--json",)):
            answered: list[dict[str, Any]] = []
            owner = threading.Thread(target=asyncio.run, args=(_later_owner(url, answered),))
            owner.start()
            r = run_cli("erase", *b.args(), "--tenant", "acme", "--user", "olga", "--reason",
                        "DSAR 2026-97", "--wait", "30", *extra, env=b.env)
            owner.join(timeout=60)
            assert answered, "the request never reached the bucket"
            assert "Traceback" not in r.stderr
            assert r.returncode == 7, r.stdout + r.stderr  # not 8: it is not pending
            answers.append(r.stdout)
            asyncio.run(_forget(url))
    said, as_json = answers[0].strip(), json.loads(answers[1])
    assert said.startswith("The erasure of u_") and said.endswith(
        " in acme is NOT known applied: node 'a', which owns acme, answered in wire version "
        "2, which this node (wire version 1) cannot read: upgrade this node and run this "
        "command again to see what it did.")
    assert said.count(". ") == 0 and "pending" not in said
    assert (as_json["pending"], as_json["applied"], as_json["unreadable_answer"]) == (
        False, False, {"wire_version": 2})
    r = run_cli("audit", "log", "--json", "--event", "erase_forwarded", *b.args(), env=b.env)
    assert [(e["details"]["outcome"], e["details"]["wire_version"])
            for e in json.loads(r.stdout)] == [("unreadable_answer", 2)] * 2


async def _forget(url: str) -> None:
    """Empty the erasures bucket between the two runs (one request a run)."""
    import nats

    nc = await nats.connect(url)
    kv = await erasures_bucket(nc.jetstream(), replicas=1)
    from appliance.cluster.kv_read import bucket_entries

    for e in await bucket_entries(kv):  # not kv.keys(): it may race to none (kv_read.py)
        await kv.purge(e.key)
    await nc.close()


async def _note(url: str, node: str, tenants: list[str]) -> None:
    """Node `node`'s note of its tenants, as a running node writes it."""
    import nats

    from appliance.cluster.tenants_known import note_tenants, tenants_bucket

    nc = await nats.connect(url)
    await note_tenants(await tenants_bucket(nc.jetstream(), replicas=1), node, tenants)
    await nc.close()


def test_erase_all_tenants_says_an_owners_later_answer_and_what_to_do(tmp_path: Path) -> None:
    """`erase --all-tenants` on a node whose tenant's owner answers in a later wire version:
    the tenant's line says the erasure is not known applied, why, and to upgrade this node
    and run the command again (exit 7, not 8 pending)."""
    with _asking_node(tmp_path) as (url, b):
        asyncio.run(_note(url, "a", ["acme"]))
        answered: list[dict[str, Any]] = []
        owner = threading.Thread(target=asyncio.run, args=(_later_owner(url, answered),))
        owner.start()
        r = run_cli("erase", *b.args(), "--all-tenants", "--user", "olga", "--reason",
                    "DSAR 2026-98", "--wait", "30", env=b.env)
        owner.join(timeout=60)
    assert answered, "the request never reached the bucket"
    assert "Traceback" not in r.stderr
    assert r.returncode == 7, r.stdout + r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("acme: ")]
    assert len(lines) == 1, r.stdout
    assert lines[0].startswith("acme: The erasure of u_") and lines[0].endswith(
        " in acme is NOT known applied: node 'a', which owns acme, answered in wire version "
        "2, which this node (wire version 1) cannot read: upgrade this node and run this "
        "command again to see what it did.")
