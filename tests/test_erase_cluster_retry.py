"""A cluster erasure the owner cannot apply at once, or asked for across a restart of
nats-server, is still applied by the running owner (real nats-server, real nodes): the
owner's store fails like a full disk for a while (`SEMTRACE_FAILPOINT=erase.tombstoned:
full:n`), `erase --wait` says the owner failed and retries (exit code 9), and the owner
applies it without a restart; a request put after nats-server came back is applied by the
node that ran through the restart."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_cluster import PARTITIONS, Node, _free_port, _nats_binary
from test_erasure_inflight import users_records
from test_spine import run_cli

from appliance.cluster.partition import partition_of

pytestmark = pytest.mark.slow

TENANT = next(t for t in (f"firm{i}" for i in range(100)) if partition_of(t, PARTITIONS) < 2)
FAILURES = 4  # the owner's store fails this many times (attempts after 0, 1, 3, 7 s)


class Nats:
    """A nats-server with JetStream on a fixed port and store, that can be restarted."""

    def __init__(self, tmp: Path) -> None:
        binary = _nats_binary()
        if binary is None:
            pytest.skip("nats-server is not installed")
        from appliance.cluster.partition import server_mappings

        self.binary, self.tmp, self.port = binary, tmp, _free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        self.conf = tmp / "nats.conf"
        self.conf.write_text(f"listen: 127.0.0.1:{self.port}\njetstream {{ store_dir: "
                             f"{tmp / 'js'} }}\n" + server_mappings(PARTITIONS))
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                stderr=(self.tmp / "nats.log").open("ab"))
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return proc
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def files_with(self, needle: bytes) -> list[Path]:
        return [p for p in (self.tmp / "js").rglob("*") if p.is_file()
                and needle in p.read_bytes()]


def _keys(tmp: Path) -> tuple[Path, Path]:
    """A new bus key file and cluster key file in `tmp`."""
    bus = tmp / "bus.key"
    assert run_cli("cluster", "bus-key", "new", str(bus)).returncode == 0
    key = tmp / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    return bus, key


@contextmanager
def _cluster(tmp: Path, failures: int = FAILURES) -> Iterator[tuple[Nats, Node, Node]]:
    bus, key = _keys(tmp)
    nats = Nats(tmp / "nats")
    a = Node(tmp, "a", nats.url, key, "0-1", bus_key=bus)
    b = Node(tmp, "b", nats.url, key, "2-3", bus_key=bus)  # only its data dir: erase runs there
    a.env["SEMTRACE_FAILPOINT"] = f"erase.tombstoned:full:{failures}"
    try:
        a.launch().wait_up()
        yield nats, a, b
    finally:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
        nats.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nats, Node, Node]]:
    with _cluster(tmp_path_factory.mktemp("erase-retry")) as c:
        yield c


def _store(node: Node, user: str, rid: str, text: str) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus = node.data.parent / "bus.key"

    row = {"v": 1, "op": "ingest", "tenant": TENANT, "user_id": user, "request_id": rid,
           "text": text, "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    with NatsClient(node.url, timeout=60, bus_keys=load_bus_keys(bus)) as gateway:
        assert gateway.request(row)["ok"]


def _erase(node: Node, user: str, *extra: str) -> list[str]:
    return ["erase", *node.args(), "--tenant", TENANT, "--user", user, "--reason",
            "DSAR 2026-91", *extra]


def _audit(node: Node, event: str) -> list[dict[str, Any]]:
    r = run_cli("audit", "log", "--json", "--event", event, *node.args(), env=node.env)
    assert r.returncode == 0, r.stderr
    return [e["details"] for e in json.loads(r.stdout)]


def _starts(node: Node) -> int:
    return node.log.read_text().count('"cluster_start"')


def _erase_waiting(node: Node, user: str, wait: int, err: Path) -> subprocess.Popen[bytes]:
    """`erase` of `user` asked on `node`'s data dir, in the background (its stdout piped,
    its stderr in `err`), once it says it waits up to `wait` s for the owner."""
    with err.open("wb") as fh:
        erase = subprocess.Popen([sys.executable, "-m", "appliance",
                                  *_erase(node, user, "--wait", str(wait))],
                                 env=node.env, stdout=subprocess.PIPE, stderr=fh)
    deadline = time.monotonic() + 60
    while f"Waiting up to {wait} s" not in err.read_text():
        assert erase.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.1)
    return erase


def test_an_erasure_the_owner_fails_to_apply_is_reported_and_retried_while_it_runs(
        cluster: tuple[Nats, Node, Node]) -> None:
    nats, a, b = cluster
    for i, text in enumerate(("Book the boiler service at 14 Quarry Lane.",
                              "Has the Quarry Lane boiler engineer confirmed?")):
        _store(a, "ulla", f"u-{i}", text)

    failed = run_cli(*_erase(b, "ulla", "--wait", "10"), env=b.env)
    said = failed.stdout
    assert failed.returncode == 9, said + failed.stderr
    assert said.startswith("The erasure of u_") and f"in {TENANT} is NOT applied yet: node " \
        "'a', which owns the tenant, failed to apply it (" in said
    assert "last: database or disk is full); the request waits in NATS and it tries again " \
        "in " in said and "while it runs, and at its next start" in said
    assert "Traceback" not in failed.stderr
    assert [e["outcome"] for e in _audit(b, "erase_forwarded")] == ["failed"]
    user = said.split()[3].encode()
    assert nats.files_with(user)  # not applied: the request stays in NATS

    # the owner keeps trying while it runs: applied without a restart
    deadline = time.monotonic() + 180
    while '"erasure_applied"' not in a.log.read_text():
        assert a.proc is not None and a.proc.poll() is None, a.log.read_text()[-2000:]
        assert time.monotonic() < deadline, "the owner did not retry the erasure"
        time.sleep(0.5)
    assert _starts(a) == 1
    log = a.log.read_text()
    assert log.count('"erasure_request_failed"') == FAILURES
    assert "database or disk is full" in log and "Traceback" not in log and "DSAR" not in log

    # asked again, as the sentence says: nothing of the user is left there
    again = run_cli(*_erase(b, "ulla", "--wait", "120", "--json"), env=b.env)
    assert again.returncode == 0, again.stdout + again.stderr
    answer = json.loads(again.stdout)
    assert answer["applied"] is True and answer["records"] == 0 and answer["node"] == "a"
    assert answer["failed"] is None and answer["user"] == user.decode()
    # the answer read: nothing of the request (nor of the one retried) is on NATS's disk
    assert nats.files_with(user) == []


def test_a_request_put_after_nats_server_restarted_is_applied_by_the_running_owner(
        cluster: tuple[Nats, Node, Node]) -> None:
    nats, a, b = cluster
    _store(a, "vic", "v-0", "Renew the Harbour Street parking permit for the van.")
    starts = _starts(a)
    nats.restart()  # the owner runs on: its connection comes back, its watch did not
    out = run_cli(*_erase(b, "vic", "--wait", "120"), env=b.env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("Erased 1 record in 1 bucket of u_")
    assert f"on node 'a', which owns {TENANT} (audited there)" in out.stdout
    assert a.proc is not None and a.proc.poll() is None and _starts(a) == starts


def test_erase_all_tenants_on_a_node_that_never_saw_the_tenant_reaches_its_owner(
        cluster: tuple[Nats, Node, Node]) -> None:
    """b's data dir holds nothing of TENANT and its policies do not name it: it learns the
    tenant from the names node a notes in NATS, and asks a."""
    import asyncio

    from appliance.cluster.tenants_known import cluster_tenants
    from appliance.config import load_policies

    nats, a, b = cluster
    _store(a, "wanda", "w-0", "Cancel the Ravelston gym membership from March.")
    settings = load_policies(b.policies).cluster
    deadline = time.monotonic() + 180
    while TENANT not in asyncio.run(cluster_tenants(settings)):  # noted before it is stored
        assert time.monotonic() < deadline, "node a did not note its tenants"
        time.sleep(1)
    out = run_cli("erase", *b.args(), "--all-tenants", "--user", "wanda", "--reason",
                  "DSAR 2026-92", "--wait", "120", "--json", env=b.env)
    assert out.returncode == 0, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert [(t["tenant"], t["records"], t["node"]) for t in done["tenants"]] == [
        (TENANT, 1, "a")]
    assert done["complete"] is True and done["pending"] == []
    assert '"tenants_note_failed"' not in a.log.read_text()
    assert nats.files_with(b"wanda") == []  # tenant names only, never a user id


def test_the_owner_erased_the_users_records_once_each(cluster: tuple[Nats, Node, Node]) -> None:
    from appliance.keys import read_key_file

    _, a, b = cluster
    assert a.stop() == 0
    for user, word in (("ulla", "boiler"), ("vic", "parking"), ("wanda", "gym")):
        n, texts = users_records(a.data, read_key_file(a.key), TENANT, user)
        assert n == 0 and not [t for t in texts if word in t]
    erased = _audit(a, "erase")
    counts = sorted(e["records"] for e in erased)
    # ulla's (retried), ulla's again (nothing left), vic's, wanda's (--all-tenants on b)
    assert counts == [0, 1, 1, 2]
    # each names the request it completes, as the asking node audited it, and how many
    # attempts it took: ulla's first, after the owner's failed ones
    asked = {e["request_id"]: e for e in _audit(b, "erase_forwarded")}
    assert all(e["request_id"] in asked for e in erased)
    retried = next(e for e in erased if e["records"] == 2)
    assert asked[retried["request_id"]]["outcome"] == "failed"
    assert retried["attempts"] == FAILURES + 1
    assert [e["attempts"] for e in erased if e is not retried] == [1, 1, 1]


def test_an_erasure_that_fails_while_the_owner_starts_stops_the_start_in_one_sentence(
        tmp_path: Path) -> None:
    """Applied before the owner consumes: a failure then stops the start (a prompt of the
    user must not be consumed first), says so, and the next start applies it."""
    with _cluster(tmp_path, failures=1) as (_, a, b):
        _store(a, "olga", "o-0", "Renew my allotment lease for plot 14.")
        assert a.stop() == 0
        pending = run_cli(*_erase(b, "olga", "--wait", "1"), env=b.env)
        assert pending.returncode == 8, pending.stdout + pending.stderr
        err = tmp_path / "erase.err"
        erase = _erase_waiting(b, "olga", 600, err)  # asked while the owner starts
        a.launch()
        assert a.proc is not None and a.proc.wait(timeout=300) != 0
        said = erase.communicate(timeout=300)[0].decode()  # at once, not after 600 s
        assert erase.returncode == 9, said + err.read_text()
        assert "failed to apply it (1 attempt, last: database or disk is full); the " \
            "request waits in NATS and it tries again at its next start" in said
        log = a.log.read_text()
        assert "Traceback" not in log and "DSAR" not in log, log[-3000:]
        last = log.strip().splitlines()[-1]  # b never ran: it asks under its host name
        assert last.startswith("semtrace: An erasure node '") and (
            f"' asked for in {TENANT} could not be applied (database or disk is full); this "
            "node does not consume before it is, so it stops: fix the store and start it "
            "again (the request waits in NATS).") in last
        a.env.pop("SEMTRACE_FAILPOINT")  # the disk freed: the next start applies it
        a.launch().wait_up()
        again = run_cli(*_erase(b, "olga", "--wait", "120"), env=b.env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.startswith("No records of u_")  # the start erased them


def test_erase_that_loses_nats_while_it_waits_says_the_request_waits_there(
        tmp_path: Path) -> None:
    """nats-server stops while `erase` waits for the owner: the request was put, so the
    command says it is pending in NATS and why it cannot tell more, exit 8, no traceback,
    and audits it."""
    bus, key = _keys(tmp_path)
    nats = Nats(tmp_path / "nats")
    b = Node(tmp_path, "b", nats.url, key, "2-3", bus_key=bus)  # its data dir asks
    err = tmp_path / "erase.err"
    try:
        erase = _erase_waiting(b, "ulla", 300, err)
    finally:
        nats.stop()
    said = erase.communicate(timeout=120)[0].decode()
    assert erase.returncode == 8, said + err.read_text()
    assert "Traceback" not in err.read_text()
    assert said.startswith("The erasure of u_") and f"in {TENANT} is pending: the request " \
        "is in NATS, but NATS stopped answering (" in said
    assert f"while this command waited for the node that takes its partition " \
        f"{partition_of(TENANT, PARTITIONS)} to apply it; that node applies it when it " \
        "reads it" in said
    (entry,) = _audit(b, "erase_forwarded")
    assert entry["outcome"] == "pending" and entry["error"].startswith("NATS stopped answering")


def test_erase_run_again_says_which_failed_request_it_replaced(tmp_path: Path) -> None:
    """The bucket keeps one request an erasure: run again, the new one replaces the one the
    owner failed to apply. The command says so with that failure, and the audit keeps
    both (the first with its failure, the second with what it replaced)."""
    # 8 failures: the first request is still failing (attempts after 0, 1, 3 ... 123 s) when
    # the second replaces it, which then takes the failures left (at most 7: within 63 s)
    with _cluster(tmp_path, failures=8) as (_, a, b):
        _store(a, "olga", "o-0", "Renew my allotment lease for plot 14.")
        first = run_cli(*_erase(b, "olga", "--wait", "10"), env=b.env)
        assert first.returncode == 9, first.stdout + first.stderr
        again = run_cli(*_erase(b, "olga", "--wait", "120"), env=b.env)
        assert again.returncode == 0, again.stdout + again.stderr
        said = again.stdout.splitlines()
        assert said[0].startswith("Erased 1 record in 1 bucket of u_")
        assert said[1].startswith(f"This request replaces the earlier one of this erasure in "
                                  f"{TENANT}, asked on node '")
        assert "which was not applied: node 'a' had failed to apply it (" in said[1]
        assert said[1].endswith(": database or disk is full); both are in this node's audit "
                                "log (erase_forwarded).")
        forwarded = _audit(b, "erase_forwarded")
        assert [e["outcome"] for e in forwarded] == ["failed", "applied"]
        assert forwarded[0]["error"] == "database or disk is full"
        earlier = forwarded[1]["superseded"]
        assert earlier["request_id"] == forwarded[0]["request_id"]
        assert earlier["failed"]["node"] == "a"
        assert earlier["failed"]["attempts"] >= forwarded[0]["attempts"] >= 1
        tries = earlier["failed"]["attempts"]
        assert f"({tries} attempt{'' if tries == 1 else 's'}, last at " in said[1]
