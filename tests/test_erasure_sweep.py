"""The bucket `semtrace_erasures` keeps a request only as long as it is needed
(appliance/cluster/erasure_sweep.py): pending ones until applied, applied ones until the
asking command read the answer or a day has passed; the sweep removes the others from the
nats-server's JetStream files, not just from the bucket's view."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from appliance.cluster.erasure_sweep import WAIT_MAX_S, kept, sweep
from appliance.cluster.erasures import Applied, ErasureRequest, Failed, encode
from appliance.cluster.kv_read import bucket_entries


def _request(user: str, rid: str, at: float) -> ErasureRequest:
    return ErasureRequest("acme", user, "sealed", rid, "b", at, "fp", "tag")


def test_only_answers_no_command_waits_for_are_dropped() -> None:
    now = 1_800_000_000.0
    old, new = now - WAIT_MAX_S - 1, now - 60
    done = Applied("a", records=2)
    assert kept(encode(_request("u_1", "r1", old)), now=now)  # pending, however old
    assert kept(encode(_request("u_1", "r1", old), failed=Failed("a", 3, "x", old)), now=now)
    assert kept(encode(_request("u_1", "r1", new), done), now=now)  # its asker may wait
    assert not kept(encode(_request("u_1", "r1", new), done), now=now, seen={"r1"})
    assert kept(encode(_request("u_1", "r1", new), done), now=now, seen={"r2"})
    assert not kept(encode(_request("u_1", "r1", old), done), now=now)  # no one waits
    assert not kept(encode(_request("u_1", "r1", old), Applied("a", refused="no")), now=now)
    assert kept(b'{"v": 2, "something": "newer"}', now=now)


@pytest.mark.slow
def test_a_sweep_removes_answered_requests_from_the_jetstream_files(tmp_path: Path) -> None:
    from test_cluster import nats_server

    from appliance.cluster.bus import connect
    from appliance.cluster.erasures import erasures_bucket
    from appliance.config import ClusterSecurity

    now = time.time()
    pending, waited = _request("u_pendingpseudonym", "p1", now - 2 * WAIT_MAX_S), \
        _request("u_waitedpseudonym", "w1", now - 30)
    seen, stale = _request("u_seenpseudonym", "s1", now - 30), \
        _request("u_stalepseudonym", "t1", now - 2 * WAIT_MAX_S)

    def files_with(needle: bytes) -> list[Path]:
        return [p for p in (tmp_path / "nats" / "js").rglob("*")
                if p.is_file() and needle in p.read_bytes()]

    async def run(url: str) -> tuple[int, int, list[str]]:
        nc = await connect(url, ClusterSecurity(), name="test")
        try:
            js = nc.jetstream()
            kv = await erasures_bucket(js, replicas=1)
            for r in (pending, waited, seen, stale):
                await kv.put(r.key, encode(r))  # asked
            for r in (waited, seen, stale):
                await kv.put(r.key, encode(r, Applied("a", records=1)))  # answered
            await nc.flush()
            deadline = time.monotonic() + 30
            while not files_with(b"u_seenpseudonym"):  # on NATS's disk, answered or not
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            removed = await sweep(js, kv, seen={"s1"})
            again = await sweep(js, kv, seen={"s1"})  # nothing left to do
            return removed, again, [e.key for e in await bucket_entries(kv)]
        finally:
            await nc.close()

    with nats_server(tmp_path / "nats") as url:
        removed, again, keys = asyncio.run(run(url))
        assert (removed, again) == (2, 0)
        assert keys == ["acme.u_pendingpseudonym", "acme.u_waitedpseudonym"]
    for gone in (b"u_seenpseudonym", b"u_stalepseudonym"):
        assert files_with(gone) == [], gone
    for there in (b"u_pendingpseudonym", b"u_waitedpseudonym"):
        assert files_with(there), there


@pytest.mark.slow
def test_a_sweep_reads_the_requests_without_a_consumer_and_keeps_the_pending_one(
        tmp_path: Path) -> None:
    """The sweep read the bucket with a watch, whose first pass may end before its first
    entry (`kv_read.py`): then no request was kept, and the purge below the last one
    removed the pending requests too. Read without a consumer now: shown by a NATS user
    that may not create one, whose sweep keeps the pending request and removes the
    answered one."""
    from test_cluster import nats_server

    from appliance.cluster.bus import connect
    from appliance.cluster.erasures import erasures_bucket
    from appliance.config import ClusterSecurity

    now = time.time()
    pending, seen = _request("u_pendingpseudonym", "p1", now - 30), \
        _request("u_seenpseudonym", "s1", now - 30)
    auth = ('authorization { users = [ { user: admin, password: "adm1n" }, '
            '{ user: sweeper, password: "sw33p", permissions: { publish: { allow: ['
            '"$JS.API.STREAM.INFO.>", "$JS.API.STREAM.PURGE.>", "$JS.API.DIRECT.GET.>", '
            '"$JS.API.STREAM.MSG.GET.>", "$JS.API.INFO", "$KV.semtrace_erasures.>", '
            '"_INBOX.>"] }, subscribe: { allow: ["_INBOX.>"] } } } ] }\n')

    async def run(url: str) -> tuple[int, list[str]]:
        admin = await connect(url.replace("nats://", "nats://admin:adm1n@"), ClusterSecurity(),
                              name="test")
        try:
            kv = await erasures_bucket(admin.jetstream(), replicas=1)
            for r in (pending, seen):
                await kv.put(r.key, encode(r))
            await kv.put(seen.key, encode(seen, Applied("a", records=1)))
            nc = await connect(url.replace("nats://", "nats://sweeper:sw33p@"),
                               ClusterSecurity(), name="sweeper")
            try:
                js = nc.jetstream()
                removed = await sweep(js, await js.key_value("semtrace_erasures"),
                                      seen={"s1"})
            finally:
                await nc.close()
            return removed, [e.key for e in await bucket_entries(kv)]
        finally:
            await admin.close()

    with nats_server(tmp_path / "nats", auth) as url:
        removed, keys = asyncio.run(run(url))
    assert (removed, keys) == (1, ["acme.u_pendingpseudonym"])
