"""Messages between nodes of two versions (a rolling upgrade: docs/scale-out.md): a field a
later version adds to an erasure request, an owner's answer, a partition claim or a tenants
note is ignored by this version, which still reads the rest; a field it knows, of another
type, is refused in one sentence. Over a real nats-server: an asking node of this version
gets a later owner's answer (it used to wait and report the erasure pending), and an owner
of this version applies a later node's request, its tag covering the field it added."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from test_cluster import nats_server

from appliance.cluster.erasures import (
    Applied,
    ErasureRequest,
    decode,
    encode,
    erasures_bucket,
    forward,
)
from appliance.cluster.tenants_known import tenants_of
from appliance.config.cluster import ClusterSettings
from appliance.keys.keyring import Keyring

KEYRING = Keyring(os.urandom(32))


def _request(requested_at: float | None = None, user: str = "olga") -> ErasureRequest:
    made = ErasureRequest("acme", KEYRING.pseudonym("acme", user), "sealed-reason",
                          os.urandom(8).hex(), "b", requested_at or time.time(),
                          KEYRING.pseudonym_id())
    return ErasureRequest(**{**made.__dict__, "tag": KEYRING.erasure_tag(made.signed())})


def _later(request: ErasureRequest, *, applied: dict[str, Any] | None = None) -> bytes:
    """The value a later version writes: a field more in the request (signed by its tag),
    in the answer and around them."""
    fields = {k: v for k, v in dataclasses.asdict(request).items()
              if k not in ("tag", "unknown")} | {"priority": "urgent"}
    tag = KEYRING.erasure_tag(json.dumps(fields, sort_keys=True).encode())
    return json.dumps({"v": 1, "request": fields | {"tag": tag}, "trace": "t-1",
                       "applied": None if applied is None else applied | {"proof": [1, 2]},
                       "failed": None}).encode()


def test_a_later_versions_fields_are_ignored_and_the_rest_read_as_before() -> None:
    request = _request()
    applied = Applied("a", buckets=2, records=5, completed_at="2026-12-06T02:00:00+00:00")
    asked, answer, _ = decode(_later(request, applied=applied.__dict__))
    assert (asked.tenant, asked.user, asked.request_id) == (request.tenant, request.user,
                                                            request.request_id)
    assert answer == applied
    # the owner's tag check: the later node signed its added field, and so does this reading
    assert KEYRING.erasure_tag(asked.signed()) == asked.tag
    # this version's answer keeps the field for the node that asked
    assert json.loads(encode(asked, answer))["request"]["priority"] == "urgent"

    from appliance.cluster.owners import claim_of

    claim = {"node": "a", "since": 1.0, "refreshed": 2.0, "version": "9.9", "zone": "eu-1"}
    assert claim_of(3, claim).node == "a" and claim_of(3, claim).refreshed == 2.0
    note = json.dumps({"tenants": ["acme", "globex"], "noted_at": 1.0}).encode()
    assert tenants_of([note, b'["initech"]']) == {"acme", "globex", "initech"}


@pytest.mark.parametrize("where,field,value", [
    ("request", "requested_at", "yesterday"), ("applied", "records", "5"),
    ("request", "tenant", None)])
def test_a_known_field_of_another_type_is_refused_in_one_sentence(
        where: str, field: str, value: Any) -> None:
    obj = json.loads(encode(_request(), Applied("a", records=5)))
    obj[where][field] = value
    with pytest.raises(ValueError) as refused:
        decode(json.dumps(obj).encode())
    said = str(refused.value)
    assert f"'{field}'" in said and said.count(".") == 1 and said.endswith(".")
    from appliance.cluster.owners import claim_of

    with pytest.raises(ValueError, match="'refreshed'"):
        claim_of(3, {"node": "a", "since": 1.0, "refreshed": "now"})
    with pytest.raises(ValueError, match="'v'"):
        decode(json.dumps(obj | {"v": "2"}).encode())


def test_a_later_wire_version_is_refused_and_an_earlier_or_equal_one_read() -> None:
    from appliance.cluster.owners import claim_of
    from appliance.cluster.tenants_known import note_of

    obj = json.loads(encode(_request()))
    with pytest.raises(ValueError) as refused:
        decode(json.dumps(obj | {"v": 2}).encode())
    assert str(refused.value) == ("The erasure request is of wire version 2, which this node "
                                  "(wire version 1) cannot read: upgrade this node.")
    for v in (1, 0):
        assert decode(json.dumps(obj | {"v": v}).encode())[0].tenant == "acme"
    claim = {"node": "a", "since": 1.0, "refreshed": 2.0}
    with pytest.raises(ValueError, match="wire version 2"):
        claim_of(3, claim | {"v": 2})
    assert claim_of(3, claim | {"v": 1}).node == "a"
    assert note_of(b'{"v": 2, "tenants": ["acme"]}') is None
    assert note_of(b'{"v": 1, "tenants": ["acme"]}') == {"acme"}


def test_an_asking_node_reads_a_later_owners_answer_over_nats(tmp_path: Path) -> None:
    """Before: the answer did not parse, and `erase --wait` reported the erasure pending."""
    with nats_server(tmp_path / "nats") as url:
        settings = ClusterSettings(url=url, partitions=4)
        request = _request()
        done = Applied("a", buckets=1, records=3)

        async def later_owner() -> None:
            import nats

            nc = await nats.connect(url)
            kv = await erasures_bucket(nc.jetstream(), replicas=1)
            while True:
                try:
                    if decode((await kv.get(request.key)).value)[1] is None:
                        break
                except Exception:  # not there yet
                    pass
                await asyncio.sleep(0.1)
            await kv.put(request.key, _later(request, applied=done.__dict__))
            await nc.close()

        async def both() -> Any:
            import nats

            # the bucket first: two processes creating it at once on a fresh server can
            # have one refused ("subjects overlap"), which is not what this test is about
            nc = await nats.connect(url)
            await erasures_bucket(nc.jetstream(), replicas=1)
            await nc.close()
            owner = asyncio.create_task(later_owner())
            answer, _ = await forward(settings, request, wait_s=20)
            await owner
            return answer

        assert asyncio.run(both()) == done


def test_an_owner_applies_a_later_nodes_request_over_nats(tmp_path: Path) -> None:
    """Before: the owner could not read the request and never applied it."""
    from appliance.cluster.erasure_inbox import ErasureInbox

    with nats_server(tmp_path / "nats") as url:
        request = _request()
        seen: list[ErasureRequest] = []

        async def apply(asked: ErasureRequest, attempt: int) -> Applied:
            seen.append(asked)
            tagged = KEYRING.erasure_tag(asked.signed()) == asked.tag
            return Applied("a", records=4 if tagged else 0,
                           refused=None if tagged else "untagged")

        async def run() -> bytes:
            import nats

            nc = await nats.connect(url)
            js = nc.jetstream()
            kv = await erasures_bucket(js, replicas=1)
            await kv.put(request.key, _later(request))
            inbox = ErasureInbox(js, replicas=1, partitions=4, owns=lambda p: True,
                                 apply=apply, node="a")
            await inbox.start()
            await inbox.stop()
            value: bytes = (await kv.get(request.key)).value
            await nc.close()
            return value

        value = asyncio.run(run())
        assert [r.request_id for r in seen] == [request.request_id]
        asked, answer, _ = decode(value)
        assert answer == Applied("a", records=4)  # its tag verified, over the added field
        assert json.loads(value)["request"]["priority"] == "urgent"


def test_an_owner_refuses_a_request_of_a_later_wire_version_in_one_logged_sentence(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A message's `v` above this version's is refused, not misread (before: `v` was never
    read, and the owner applied a v2 request as if it were v1); v1 and a missing `v` are read
    as before. Said once per value, not at each new watch."""
    import logging

    from appliance.cluster.erasure_inbox import ErasureInbox

    later, same, unversioned = (_request(user=u) for u in ("olga", "ulla", "ines"))
    values = {later.key: json.loads(encode(later)) | {"v": 2},
              same.key: json.loads(encode(same)),
              unversioned.key: {k: v for k, v in json.loads(encode(unversioned)).items()
                                if k != "v"}}
    assert len(values) == 3  # three users' keys
    with nats_server(tmp_path / "nats") as url:
        seen: list[str] = []

        async def apply(asked: ErasureRequest, attempt: int) -> Applied:
            seen.append(asked.request_id)
            return Applied("a", records=1)

        async def run() -> dict[str, Any]:
            import nats

            nc = await nats.connect(url)
            js = nc.jetstream()
            kv = await erasures_bucket(js, replicas=1)
            for key, value in values.items():
                await kv.put(key, json.dumps(value).encode())
            inbox = ErasureInbox(js, replicas=1, partitions=4, owns=lambda p: True,
                                 apply=apply, node="a")
            await inbox.start()
            await inbox.stop()  # its follow task would replace the watch below meanwhile
            await inbox._watch()  # the next watch reads every value again
            await inbox._unwatch()
            left = {k: json.loads((await kv.get(k)).value) for k in values}
            await nc.close()
            return left

        with caplog.at_level(logging.WARNING, logger="semtrace.cluster"):
            left = asyncio.run(run())
    assert sorted(seen) == sorted([same.request_id, unversioned.request_id])
    assert left[later.key] == values[later.key]  # left for a node that reads it
    said = [r for r in caplog.records if getattr(r, "event", None) == "erasure_unreadable"]
    assert [r.getMessage() for r in said] == [
        "The erasure request is of wire version 2, which this node (wire version 1) cannot "
        "read: upgrade this node."]


@pytest.mark.slow
def test_a_real_owner_erases_for_a_later_nodes_request(tmp_path: Path) -> None:
    """A real `serve --nats` node of this version owns the tenant; a node of a later version
    asks it, through NATS, to erase a user with a request carrying a field this version does
    not know: the owner erases the user's records and answers. Before: it never did."""
    from test_cluster import Node
    from test_erasure_inflight import users_records
    from test_spine import run_cli

    from appliance.cluster.client import NatsClient
    from appliance.keys.credentials import read_key_file
    from appliance.keys.keyring_file import open_keyring

    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        a = Node(tmp_path, "a", url, key, "0-3", bus_key=None)
        a.launch().wait_up()
        try:
            row = {"v": 1, "op": "ingest", "tenant": "acme", "user_id": "olga",
                   "request_id": "o-0", "text": "Move my dentist appointment to Friday.",
                   "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with NatsClient(url, timeout=60, plain_bus=True) as gateway:
                assert gateway.request(row)["ok"]
            cred = read_key_file(key)
            assert users_records(a.data, cred, "acme", "olga")[0] > 0
            ring = open_keyring(a.data, cred)
            user = ring.pseudonym("acme", "olga")
            fields = {"tenant": "acme", "user": user, "request_id": os.urandom(8).hex(),
                      "reason": ring.seal_for_cluster(b"DSAR 2026-96",
                                                      f"acme.{user}".encode()),
                      "requested_on": "c", "requested_at": time.time(),
                      "pseudonyms": ring.pseudonym_id(), "priority": "urgent"}
            tag = ring.erasure_tag(json.dumps(fields, sort_keys=True).encode())
            value = json.dumps({"v": 1, "request": fields | {"tag": tag}, "applied": None,
                                "failed": None}).encode()

            async def ask() -> Any:
                import nats

                nc = await nats.connect(url)
                kv = await erasures_bucket(nc.jetstream(), replicas=1)
                await kv.put(f"acme.{user}", value)
                try:
                    for _ in range(600):
                        answer = json.loads((await kv.get(f"acme.{user}")).value)["applied"]
                        if answer is not None:
                            return answer
                        await asyncio.sleep(0.2)
                    return None
                finally:
                    await nc.close()

            answer = asyncio.run(ask())
            assert answer is not None, "the owner never answered the later node's request"
            assert answer["refused"] is None and answer["records"] > 0, answer
            assert users_records(a.data, cred, "acme", "olga")[0] == 0
        finally:
            a.stop()


@pytest.mark.parametrize("note", [b"", b'["acme"', b'\xff["acme"]', b'{"names": ["acme"]}',
                                  b'["acme", 7]', b'"acme"'])
def test_a_note_this_version_cannot_read_is_told_apart_from_an_empty_one(note: bytes) -> None:
    from appliance.cluster.tenants_known import note_of

    assert note_of(note) is None
    assert note_of(b"[]") == set() and note_of(b'{"tenants": []}') == set()
