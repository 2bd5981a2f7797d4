"""The start-up retention run on a data dir with a backlog: the service says it is catching
up (ping, /metrics), how far it is, and records prompts meanwhile.

The run is slowed by holding each chunk's shred until the test lets it go (no clock)."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt
from exposition_check import check_text

from appliance.client import Client
from appliance.config import TelemetrySettings

USERS = 6  # one expired bucket each (their prompts are of 2026-03-02)
CHUNK = 2  # buckets a worker job shreds: three chunks
WAIT = 120  # seconds: a bound on a hang, never a measurement


class _Gated:
    """shred_buckets held at the start of every call until `release[n]` is set."""

    def __init__(self, shredder: Any, order: list[str]) -> None:
        self.entered = [threading.Event() for _ in range(USERS)]
        self.release = [threading.Event() for _ in range(USERS)]
        self._inner = shredder.shred_buckets
        self._calls = 0
        self._order = order
        shredder.shred_buckets = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        n = self._calls
        self._calls += 1
        self.entered[n].set()
        assert self.release[n].wait(WAIT)
        self._order.append(f"shred-{n}")
        return self._inner(*args, **kwargs)


def _scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = {}
    for family in check_text(text).values():  # as Prometheus reads it
        for s in family.samples:
            key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))
            out[key] = s.value
    return out


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(30)


def test_a_long_start_up_retention_run_says_catching_up_and_prompts_are_recorded_meanwhile(
        pipeline: Any, runtime: Any, loop: asyncio.AbstractEventLoop) -> None:
    from appliance.audit import AuditLog
    from appliance.retention import Shredder, live_buckets
    from appliance.service import Service
    from appliance.service.retention_job import RetentionJob
    from appliance.telemetry import start_telemetry

    for i in range(USERS):  # the backlog: six users' buckets of a day long past
        pipeline.process([make_prompt(f"Question {i} about the VPN gateway", user=f"u{i}")])
    assert len(live_buckets(runtime.store)) == USERS
    order: list[str] = []
    process = pipeline.process

    def recorded(prompts: Any, **kw: Any) -> Any:
        order.append("ingest")
        return process(prompts, **kw)

    pipeline.process = recorded
    service = Service(pipeline, runtime.policies, socket_path=runtime.data_dir / "s.sock")
    settings = TelemetrySettings.model_validate({"metrics": {"listen": "127.0.0.1:0"}})
    telemetry, server = start_telemetry(settings, pipeline, queue_depth=service.queue_depth,
                                        health=service.health)
    service.observer = telemetry
    shredder = Shredder(runtime.store, AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                                                anchor=runtime.store.keys_db),
                        index=pipeline.index, on_user_shredded=pipeline.forget)
    gate = _Gated(shredder, order)
    job = RetentionJob(service, shredder, runtime.keyring, telemetry=telemetry, chunk=CHUNK)

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(WAIT)

    async def begin() -> asyncio.Task[Any]:
        job.begin_catchup()
        await service.start()
        return asyncio.ensure_future(job.run(catchup=True))

    run = on_loop(begin())
    try:
        assert gate.entered[0].wait(WAIT)
        gate.release[0].set()
        assert gate.entered[1].wait(WAIT)  # the second chunk holds the worker

        with Client(service.socket_path) as c:
            ping = c.ping()
        assert ping["status"] == "retention_catchup"
        assert ping["retention"] == {"buckets_shredded": CHUNK, "buckets_due": USERS}
        m = _scrape(server.address)
        assert m["semtrace_service_state{state=retention_catchup}"] == 1
        assert m["semtrace_service_state{state=serving}"] == 0
        assert m["semtrace_retention_run_buckets_due"] == USERS
        assert m["semtrace_retention_run_buckets_shredded"] == CHUNK
        # what the example alert rules leave out while it catches up: both still 0
        assert m["semtrace_retention_last_run_timestamp_seconds"] == 0
        assert m["semtrace_audit_last_verified_timestamp_seconds"] == 0

        # a prompt sent now waits behind the chunk in work, not behind the whole run
        replies: list[dict[str, Any]] = []

        def send() -> None:
            with Client(service.socket_path) as c:
                replies.append(c.ingest(tenant="acme", user_id="gateway-user",
                                        text="Is the VPN down again?", request_id="live-1",
                                        ts=datetime.now(UTC).isoformat()))

        sender = threading.Thread(target=send)
        sender.start()

        async def taken() -> bool:  # the batch is on its way to the worker
            return service.queue_depth() == 0 and bool(service._pending)

        while not on_loop(taken()):
            assert sender.is_alive() or replies
            threading.Event().wait(0.01)
        gate.release[1].set()
        sender.join(WAIT)
        assert replies and replies[0]["ok"], replies
        assert order == ["shred-0", "shred-1", "ingest"]  # the third chunk still waits
        with Client(service.socket_path) as c:
            assert c.ping()["status"] == "retention_catchup"

        gate.release[2].set()
        report = on_loop(_await(run))
        assert report is not None and report.shredded == USERS
        with Client(service.socket_path) as c:
            ping = c.ping()
        assert ping["status"] == "serving" and "retention" not in ping
        m = _scrape(server.address)
        assert m["semtrace_service_state{state=serving}"] == 1
        assert m["semtrace_retention_run_buckets_due"] == 0
        assert m["semtrace_retention_last_run_timestamp_seconds"] > 0
        assert m["semtrace_audit_chain_valid"] == 1
        assert m["semtrace_buckets_shredded_total"] == USERS
        assert [b.user for b in live_buckets(runtime.store)] == [
            runtime.keyring.pseudonym("acme", "gateway-user")]
    finally:
        for event in gate.release:
            event.set()
        on_loop(service.drain())
        server.close()
        telemetry.shutdown()


async def _await(task: Any) -> Any:
    return await task


def test_the_example_alerts_on_stale_timestamps_are_left_out_while_catching_up() -> None:
    """Both timestamps are 0 until the start-up run ends: an alert on their age must not
    fire while the service is starting or catching up, and a catch-up that lasts has its
    own alert."""
    import yaml

    rules = {r["alert"]: r for r in yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "docs" / "alerts.yml").read_text()
    )["groups"][0]["rules"]}
    for name in ("SemtraceRetentionStale", "SemtraceAuditNotVerified"):
        expr = " ".join(rules[name]["expr"].split())
        assert ('unless on (instance) semtrace_service_state{state=~"starting|'
                'retention_catchup"} == 1') in expr, name
    assert 'semtrace_service_state{state="retention_catchup"}' in \
        rules["SemtraceRetentionCatchupLong"]["expr"]


def test_a_stop_during_the_catch_up_ends_it_at_the_next_chunk_and_the_next_start_finishes(
        pipeline: Any, runtime: Any, loop: asyncio.AbstractEventLoop) -> None:
    from appliance.audit import AuditLog
    from appliance.retention import Shredder, live_buckets
    from appliance.service import Service
    from appliance.service.retention_job import RetentionJob
    from appliance.telemetry import start_telemetry

    for i in range(USERS):
        pipeline.process([make_prompt(f"Question {i} about the VPN gateway", user=f"u{i}")])
    service = Service(pipeline, runtime.policies, socket_path=runtime.data_dir / "s.sock")
    settings = TelemetrySettings.model_validate({"metrics": {"listen": "127.0.0.1:0"}})
    telemetry, server = start_telemetry(settings, pipeline, queue_depth=service.queue_depth,
                                        health=service.health)

    def shredder() -> Shredder:
        return Shredder(runtime.store, AuditLog(runtime.store.db,
                                                runtime.keyring.audit_signer(),
                                                anchor=runtime.store.keys_db),
                        index=pipeline.index, on_user_shredded=pipeline.forget)

    first = shredder()
    gate = _Gated(first, [])
    job = RetentionJob(service, first, runtime.keyring, telemetry=telemetry, chunk=CHUNK)

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(WAIT)

    async def begin() -> asyncio.Task[Any]:
        await service.start()
        return asyncio.ensure_future(job.run(catchup=True))

    run = on_loop(begin())
    try:
        gate.release[0].set()
        assert gate.entered[1].wait(WAIT)
        loop.call_soon_threadsafe(service.request_stop)  # SIGTERM's handler
        while _scrape(server.address)["semtrace_service_state{state=stopping}"] != 1:
            threading.Event().wait(0.01)  # (new connections are closed once it stops)
        gate.release[1].set()  # the chunk in work finishes; the third never starts
        assert on_loop(_await(run)) is None
        assert not gate.entered[2].is_set()
        assert len(live_buckets(runtime.store)) == USERS - 2 * CHUNK
        m = _scrape(server.address)
        assert m["semtrace_retention_runs_total{result=failed}"] == 0  # a stop, not a failure
        events = [r[0] for r in runtime.store.db.execute("SELECT event FROM audit")]
        assert events.count("shred") == 2 * CHUNK and "retention_run" not in events
    finally:
        for event in gate.release:
            event.set()
        on_loop(service.drain())
        server.close()
        telemetry.shutdown()

    again = Service(pipeline, runtime.policies, socket_path=runtime.data_dir / "s2.sock")
    restarted = RetentionJob(again, shredder(), runtime.keyring, chunk=CHUNK)

    async def second() -> Any:
        await again.start()
        try:
            return await restarted.run(catchup=True)
        finally:
            await again.drain()

    report = on_loop(second())
    assert report is not None and report.shredded == USERS - 2 * CHUNK
    assert live_buckets(runtime.store) == []
