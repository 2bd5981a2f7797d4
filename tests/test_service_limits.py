"""The service's bounds, in process on the real pipeline: connections, the worker queue,
time windows, the socket directory, peers' groups and what SIGHUP applies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.client import AsyncClient


def _service(pipeline: Any, sock: Path, **changes: Any) -> Any:
    from appliance.service import Service

    policies = pipeline.policies
    for section, values in changes.items():
        policies = policies.model_copy(update={
            section: getattr(policies, section).model_copy(update=values)})
    return Service(pipeline, policies, socket_path=sock)


def _ingest(rid: str, ts: datetime, **kw: Any) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "request_id": rid, "tenant": "acme", "user_id": "alice",
            "ts": ts.isoformat(), "text": "How do I book a meeting room?", **kw}


def test_far_future_and_ancient_timestamps_are_refused_and_store_nothing(
        pipeline: Any, tmp_path: Path) -> None:
    svc = _service(pipeline, tmp_path / "s.sock")
    now = datetime.now(UTC)

    async def main() -> list[dict[str, Any]]:
        await svc.start()
        c = await AsyncClient.connect(svc.socket_path)
        out = [await c.request(_ingest(f"t-{i}", ts)) for i, ts in enumerate(
            [now + timedelta(days=3650), now - timedelta(days=3650), now])]
        await c.close()
        await svc.drain()
        return out

    future, ancient, ok = asyncio.run(main())
    assert future["error"]["code"] == "bad_request" and "'ts'" in future["error"]["message"]
    assert ancient["error"]["code"] == "bad_request"
    assert ok["ok"] is True
    assert pipeline.store.counts()["records"] == 1
    days = [r[0] for r in pipeline.store.db.execute("SELECT day FROM buckets")]
    assert days == [now.strftime("%Y-%m-%d")]


def test_one_connection_too_many_gets_busy_and_the_others_keep_working(
        pipeline: Any, tmp_path: Path) -> None:
    svc = _service(pipeline, tmp_path / "s.sock", service={"max_connections": 3})

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        await svc.start()
        clients = [await AsyncClient.connect(svc.socket_path) for _ in range(3)]
        pings = [await c.request({"v": 1, "op": "ping"}) for c in clients]
        extra = await AsyncClient.connect(svc.socket_path)
        refused = json.loads(await extra._reader.readline())
        await extra.close()
        await clients[0].close()
        await asyncio.sleep(0.05)
        again = await AsyncClient.connect(svc.socket_path)
        later = await again.request({"v": 1, "op": "ping"})
        for c in [*clients[1:], again]:
            await c.close()
        await svc.drain()
        return pings, refused, later

    pings, refused, later = asyncio.run(main())
    assert all(p["ok"] for p in pings)
    assert refused["error"]["code"] == "busy" and refused["error"]["retry_after_ms"] > 0
    assert later["ok"]


def _until_closed(raw: Any) -> bytes:
    """What the service sent until it closed: EOF, or a reset once the frames are read (a
    socket closed with requests unread in it is reset, on Linux after its data)."""
    got = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := raw.recv(65536):
            got += chunk
    return got


def test_a_connection_over_the_bound_is_refused_before_any_request_is_read(
        pipeline: Any, tmp_path: Path) -> None:
    """Over `max_connections` the `busy` frame is sent as the connection opens, before any
    line is read: its `request_id` is null (there is none to echo, docs/protocol.md says
    so), nothing written on it is read or stored, the connection is closed. `semtrace send`
    says so in one sentence; before, it printed that frame as the reply to its first request
    and then 'The service closed the connection.'"""
    import socket

    from click.testing import CliRunner
    from conftest import running_service

    from appliance.cli import cli
    from appliance.client import Client, ConnectionClosed

    service = pipeline.policies.service.model_copy(update={"max_connections": 1})
    policies = pipeline.policies.model_copy(update={"service": service})
    sock = tmp_path / "s.sock"
    now = datetime.now(UTC)
    lines = "".join(json.dumps(_ingest(f"over-{i}", now)) + "\n" for i in range(2))
    with running_service(pipeline, sock, policies=policies), Client(sock) as held:
        assert held.ping()["ok"]  # the one connection the bound allows
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(sock))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed
                raw.sendall(lines.encode())
            raw.settimeout(60)
            got = _until_closed(raw)
        sent = CliRunner().invoke(cli, ["send", "--socket", str(sock)], input=lines)
    frames = [json.loads(line) for line in got.splitlines()]
    assert len(frames) == 1 and frames[0]["request_id"] is None
    assert frames[0]["error"]["code"] == "busy" and frames[0]["error"]["retry_after_ms"] > 0
    assert isinstance(sent.exception, ConnectionClosed) and sent.stdout == ""
    assert str(sent.exception) == ("The service refused this connection: Too many "
                                   "connections are open; retry shortly.")
    assert pipeline.store.counts()["records"] == 0


def test_lookups_and_stats_count_against_the_queue_bound(pipeline: Any, tmp_path: Path) -> None:
    svc = _service(pipeline, tmp_path / "s.sock", service={"queue_max": 2})
    gate = threading.Event()

    async def main() -> list[dict[str, Any]]:
        await svc.start()
        blocker = asyncio.ensure_future(svc.in_worker(gate.wait))  # the worker is busy
        clients = [await AsyncClient.connect(svc.socket_path) for _ in range(3)]
        asks = [asyncio.ensure_future(c.request(
            {"v": 1, "op": "lookup", "tenant": "acme", "request_id": f"x-{i}"}
            if i else {"v": 1, "op": "stats"})) for i, c in enumerate(clients)]
        # the worker stays busy until one of them is told to retry (not a fixed 0.3 s: on a
        # loaded host the third had not arrived yet, and was answered, not refused)
        await asyncio.wait(asks, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        gate.set()
        out = list(await asyncio.gather(*asks))
        await blocker
        for c in clients:
            await c.close()
        await svc.drain()
        return out

    replies = asyncio.run(main())
    codes = sorted(r["error"]["code"] if not r["ok"] else "ok" for r in replies)
    assert codes.count("busy") == 1  # two waited for the worker, the third was told to retry


def test_the_socket_directory_is_restricted_only_when_the_service_made_it(
        pipeline: Any, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    made = tmp_path / "made" / "run"

    async def main() -> None:
        for sock in (shared / "s.sock", made / "s.sock"):
            svc = _service(pipeline, sock)
            await svc.start()
            await svc.drain()

    asyncio.run(main())
    assert shared.stat().st_mode & 0o777 == 0o755  # someone else's directory: untouched
    assert made.stat().st_mode & 0o777 == 0o750


def test_peer_policy_takes_supplementary_groups() -> None:
    from appliance.config import AccessSettings, RoleSettings
    from appliance.service import peer_allowed, supplementary_groups

    access = AccessSettings(roles={"operator": RoleSettings(permissions=[])}, socket_gids=[2002])
    assert peer_allowed(7, {7, 2002}, access, own_uid=500)
    assert not peer_allowed(7, {7, 8}, access, own_uid=500)
    assert supplementary_groups(os.getpid(), os.getuid(), os.getgid()) == set(os.getgroups())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client under another uid")
def test_a_peer_allowed_only_by_a_supplementary_group_gets_in(
        pipeline: Any, tmp_path: Path) -> None:
    base = tmp_path / "pub"
    base.mkdir()
    sock = base / "s.sock"
    svc = _service(pipeline, sock, access={"socket_gids": [4242]})
    dirs = [p for p in sock.parents if p != Path("/")]
    modes = {p: p.stat().st_mode & 0o7777 for p in dirs}  # /tmp keeps its sticky bit
    code = ("import os, socket; os.setgroups([4242]); os.setgid(65534); os.setuid(65534);"
            f"s=socket.socket(socket.AF_UNIX); s.connect({str(sock)!r});"
            "s.sendall(b'{\"v\":1,\"op\":\"ping\"}\\n'); print(s.recv(4096).decode())")

    async def main() -> str:
        await svc.start()
        os.chmod(sock, 0o666)
        for p in dirs:
            os.chmod(p, modes[p] | 0o011)
        try:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                        stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
        finally:
            for p in dirs:
                os.chmod(p, modes[p])
            await svc.drain()
        return out.decode()

    assert json.loads(asyncio.run(main()))["ok"] is True


def test_sighup_applies_live_keys_and_names_those_that_need_a_restart(policies: Any) -> None:
    from appliance.service import reload_plan

    new = policies.model_copy(update={
        "access": policies.access.model_copy(update={"socket_uids": [1234]}),
        "redaction": policies.redaction.model_copy(update={"score_threshold": 0.9}),
        "correlation": policies.correlation.model_copy(update={"link_threshold": 0.9}),
        "service": policies.service.model_copy(update={"queue_max": 7, "batch_max": 3})})
    applied, restart = reload_plan(policies, new)
    assert applied.access.socket_uids == [1234] and applied.service.batch_max == 3
    assert applied.redaction.score_threshold == policies.redaction.score_threshold
    assert applied.service.queue_max == policies.service.queue_max
    assert restart == ["correlation.link_threshold", "redaction.score_threshold",
                       "service.queue_max"]
    assert reload_plan(policies, policies) == (policies, [])


def test_query_socket_connections_have_a_bound_of_their_own(pipeline: Any,
                                                            tmp_path: Path) -> None:
    """A reader flooding the query socket cannot exhaust the service: its connections are
    bounded by `max_connections` too (apart from the ingest socket's, which readers never
    take: tests/test_socket_hostile_clients.py)."""
    from appliance.service import Service

    policies = pipeline.policies.model_copy(update={
        "service": pipeline.policies.service.model_copy(update={"max_connections": 2})})
    qsock = tmp_path / "q" / "query.sock"
    svc = Service(pipeline, policies, socket_path=tmp_path / "s.sock", query_socket_path=qsock)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        await svc.start()
        clients = [await AsyncClient.connect(qsock) for _ in range(2)]
        for c in clients:
            assert (await c.request({"v": 1, "op": "bogus"}))["error"]["code"] == "unknown_op"
        extra = await AsyncClient.connect(qsock)
        # without the bound the service waits for a query: fail, do not hang
        refused = json.loads(await asyncio.wait_for(extra._reader.readline(), 10))
        await extra.close()
        await clients[0].close()
        await asyncio.sleep(0.05)
        reader = await AsyncClient.connect(qsock)
        answered = await reader.request({"v": 1, "op": "bogus"})
        for c in (clients[1], reader):
            await c.close()
        await svc.drain()
        return refused, answered

    refused, answered = asyncio.run(main())
    assert refused["error"]["code"] == "busy"
    assert answered["error"]["code"] == "unknown_op"  # served once a slot is free


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client under another uid")
def test_a_member_of_the_services_group_gets_in_as_the_install_guide_says(
        pipeline: Any, tmp_path: Path) -> None:
    """README: 'add the gateway's user to the semtrace group'. With no socket_gids listed,
    a gateway in the service's group was refused ('This user may not use the socket')."""
    base = Path(tempfile.mkdtemp(prefix="semtrace-peer-"))  # outside pytest's 0700 root,
    base.chmod(0o711)  # which another pytest session on the host may close at any time
    sock = base / "s.sock"
    code = (f"import contextlib, os, socket\nos.setgroups([{os.getgid()}])\n"
            "os.setgid(65534)\nos.setuid(65534)\ns = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({str(sock)!r})\nwith contextlib.suppress(OSError):\n"
            "    s.sendall(b'{\"v\":1,\"op\":\"ping\"}\\n')\n"
            "print(s.recv(4096).decode())\n")

    async def ask(svc: Any) -> dict[str, Any]:
        await svc.start()
        try:  # the socket stays 0660: only the group's members reach it
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                        stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
        finally:
            await svc.drain()
        return dict(json.loads(out.decode()))

    assert asyncio.run(ask(_service(pipeline, sock)))["ok"] is True
    refused = asyncio.run(ask(_service(pipeline, sock, access={"allow_same_gid": False})))
    shutil.rmtree(base, ignore_errors=True)
    assert refused["error"]["code"] == "forbidden"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client under another uid")
def test_send_from_a_user_the_service_does_not_admit_says_so_in_one_sentence(
        pipeline: Any, tmp_path: Path) -> None:
    """It printed the refusal frame as a reply and then 'Connection reset by peer.', or, when
    the service closed before the requests were written, nothing at all (exit 1)."""
    base = Path(tempfile.mkdtemp(prefix="semtrace-peer-"))  # outside pytest's 0700 root
    base.chmod(0o711)
    sock = base / "s.sock"
    lines = tmp_path / "in.jsonl"
    lines.write_text("".join(json.dumps({"tenant": "acme", "user_id": "ann", "text": t}) + "\n"
                             for t in ("What's the weather in Paris?", "And tomorrow?")))
    # What `send` imports is imported before the uid changes: this host's interpreter lives
    # under /root, which uid 65534 may not read (the CLI imports its modules as it needs them).
    code = ("import os, sys\nfrom appliance.cli import main\nimport appliance.client\n"
            "import appliance.cli.service\nimport appliance.runtime\nos.setgroups([])\n"
            "os.setgid(65534)\n"
            f"os.setuid(65534)\nmain(['send', '--socket', {str(sock)!r}])\n")
    svc = _service(pipeline, sock)

    async def main() -> list[tuple[int, bytes, bytes]]:
        await svc.start()
        os.chmod(sock, 0o666)
        runs = []
        try:
            for _ in range(5):
                with lines.open("rb") as stdin:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-c", code, stdin=stdin, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
                    out, err = await proc.communicate()
                runs.append((proc.returncode or 0, out, err))
        finally:
            await svc.drain()
            shutil.rmtree(base, ignore_errors=True)
        return runs

    for rc, out, err in asyncio.run(main()):
        assert (rc, out) == (4, b""), (rc, out, err)
        assert err.decode() == ("semtrace: The service refused this connection: "
                                "This user may not use the socket.\n")


def test_sighup_names_a_replaced_linker_weights_file_as_needing_a_restart(
        pipeline: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The model is loaded at start: a retrained weights file put in place and a SIGHUP
    said only `reload`, and the operator took the old model for the new one."""
    import logging

    from appliance.link.model import weights_path
    from appliance.service import Service

    weights = tmp_path / "linker-weights.json"
    shutil.copy(weights_path(pipeline.policies.correlation), weights)
    policies = pipeline.policies.model_copy(update={
        "correlation": pipeline.policies.correlation.model_copy(
            update={"weights_file": str(weights)})})
    svc = Service(pipeline, policies, socket_path=tmp_path / "s.sock", reload=lambda: policies)

    def named_on_reload() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="semtrace.service"):
            svc.reload_policies()
        assert [r.event for r in caplog.records][0] == "reload"  # type: ignore[attr-defined]
        return [k for r in caplog.records if r.event == "reload_needs_restart"  # type: ignore[attr-defined]
                for k in r.keys]  # type: ignore[attr-defined]

    try:
        assert named_on_reload() == []
        spec = json.loads(weights.read_text(encoding="utf-8"))
        spec["threshold"] = spec["threshold"] + 0.05
        weights.write_text(json.dumps(spec), encoding="utf-8")
        assert named_on_reload() == ["linker-weights.json"]
    finally:
        asyncio.run(svc.drain())


@pytest.mark.parametrize("size", [4096, 4 << 20])
def test_send_names_the_line_over_the_frame_limit_and_keeps_the_replies_before_it(
        pipeline: Any, tmp_path: Path, size: int) -> None:
    """The service answers a line over `max_frame_bytes` with `frame_too_large` and closes
    the connection, reading no further. `semtrace send` printed that frame and then 'The
    service closed the connection.'; and when the line was larger than the socket could take
    in (the service gone while it was still written), it lost the replies of the lines sent
    before too. Now it prints every reply the service wrote and names the line, what was not
    sent and what to do, in one sentence."""
    from click.testing import CliRunner
    from conftest import running_service

    from appliance.cli import cli

    service = pipeline.policies.service.model_copy(update={"max_frame_bytes": 1024})
    policies = pipeline.policies.model_copy(update={"service": service})
    sock = tmp_path / "s.sock"
    lines = "".join(json.dumps(line) + "\n" for line in (
        {"op": "ping", "request_id": "before"}, {"op": "ping", "request_id": "x" * 8,
                                                 "pad": "x" * size},
        {"op": "ping", "request_id": "after"}))
    with running_service(pipeline, sock, policies=policies):
        sent = CliRunner().invoke(cli, ["send", "--socket", str(sock)], input=lines)
    replies = [json.loads(line) for line in sent.stdout.splitlines()]
    assert [r["request_id"] for r in replies] == ["before", None]
    assert replies[1]["error"]["code"] == "frame_too_large"
    assert sent.exit_code == 1 and str(sent.exception) == (
        "Line 2 is larger than the service's frame limit (max_frame_bytes in its "
        "service.toml): the service refused it and closed the connection, so the lines after "
        "it were not sent; cut that prompt (docs/protocol.md, Over-long prompts) or raise "
        "max_frame_bytes, then send lines 2 on again.")
