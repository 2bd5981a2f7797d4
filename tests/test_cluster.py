"""Scale-out through a real nats-server with JetStream: two nodes, eight tenants.

The server is started here on a loopback port with the mappings that
`semtrace cluster nats-config` prints; the nodes are `semtrace serve --nats`
subprocesses sharing one key file and one bus key file, as in production: every
message of the two-node cluster (failover, redelivery after kill -9, a partition
moved, eight tenants) crosses the bus sealed, and the answers the tests read on
`semtrace.enriched.>` are checked to be sealed before they are opened.

Only the tests whose point needs plain text run against `plain`, a second
nats-server with one node that opted out (`plain_bus = true`): reading a
prompt's raw bytes on the wire, a keyless node refusing a sealed message, and
the opt-out's warning. Sealing's own wire and store checks: test_cluster_seal.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import NatsTap
from exposition_check import check_text
from test_spine import run_cli

from appliance.client import Client
from appliance.cluster.partition import partition_of
from appliance.keys.bus import BusKeys

pytestmark = pytest.mark.slow
PARTITIONS = 4
TENANTS = [f"t{i}" for i in range(1, 9)]
# Yesterday: within retention, and never ahead of the service's clock (ts is bounded).
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
CONVERSATIONS = [
    ["How do I bake sourdough bread at home?", "How long should the dough rise?",
     "Can I use whole wheat flour instead?"],
    ["What is the capital of Australia?", "What is the population there?",
     "Which season is best to visit it?"],
    ["Write a Python function that reverses a list.", "Now make it work for strings too.",
     "Add type hints to that function."],
    ["Suggest a name for my new puppy.", "She is a golden retriever.",
     "Something shorter, please."],
]

FOLLOW_UPS = ["Does the dough need to rise twice?", "What language do people speak there?",
              "Can you add a docstring to that function?", "How often should I feed her?"]


def _nats_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.path.exists(p)), None)


_HANDED_OUT: set[int] = set()


def _free_port() -> int:
    """A loopback port no one listens on, and not one this run handed out before: the
    kernel draws bind(0)'s port at random among the free ones, so the port just closed here
    (a node's metrics port, its node not started yet) came back for the next node about one
    draw in 14,000 (5 in 100,000 measured), and two nodes were given one metrics port."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@contextmanager
def nats_server(tmp: Path, extra: str = "", *, jetstream: bool = True) -> Iterator[str]:
    """A nats-server with JetStream and the partition mappings on a loopback port.

    `extra`: more of its configuration (e.g. an authorization block); `jetstream=False`:
    a server without JetStream."""
    binary = _nats_binary()
    if binary is None:
        pytest.skip("nats-server is not installed and `make test` could not install it "
                    "(apt-get install nats-server)")
    from appliance.cluster.partition import server_mappings

    tmp.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = tmp / "nats.conf"
    js = f"jetstream {{ store_dir: {tmp / 'js'} }}\n" if jetstream else ""
    conf.write_text(f"listen: 127.0.0.1:{port}\n{js}" + server_mappings(PARTITIONS) + extra)
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=(tmp / "nats.log").open("wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Starting:
    """How long a node's start may take before a test gives up on it.

    Counted in the node's own CPU time, not wall time: a start (its models loading) costs
    about 15 s of CPU, but on a loaded host (test files in parallel, the other jobs of a
    shared CI machine) it took over 240 s of wall time, and a fixed 240 s wall deadline
    failed tests whose node was still loading (3 runs of 3, `node a did not come up`,
    its log at `starting: loading the models`). A node that burns START_CPU_S without
    coming up is broken; one that waits at no CPU (a hang) is given up after START_WALL_S."""

    START_CPU_S = 240.0
    START_WALL_S = 900.0

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0, self.wall0 = self._cpu(), time.monotonic()

    def _cpu(self) -> float:
        try:
            return cpu_seconds(self.pid)
        except (OSError, IndexError, ValueError):  # exited: the caller's poll() says so
            return 0.0

    def given_up(self) -> bool:
        return (self._cpu() - self.cpu0 > self.START_CPU_S
                or time.monotonic() - self.wall0 > self.START_WALL_S)

    def __str__(self) -> str:
        return (f"{self._cpu() - self.cpu0:.0f} s of CPU in "
                f"{time.monotonic() - self.wall0:.0f} s")


class Node:
    """A `semtrace serve --nats` subprocess with its own data dir."""

    def __init__(self, tmp: Path, name: str, url: str, key: Path, own: str, *,
                 bus_key: Path | None) -> None:
        """`bus_key`: the cluster's bus key file; None is the explicit opt-out plain_bus."""
        self.name, self.url, self.key, self.own = name, url, key, own
        self.data = tmp / name
        self.sock = self.data / "semtrace.sock"
        self.log = tmp / f"{name}.log"
        self.policies = tmp / f"policies-{name}"
        self.metrics_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        from appliance.config import policy_dir

        shutil.copytree(policy_dir(), self.policies)
        (self.policies / "cluster.toml").write_text(
            f'url = "{url}"\npartitions = {PARTITIONS}\nack_wait_s = 5\nfetch_batch = 4\n'
            "owner_ttl_s = 6\n[security]\n"
            + (f'bus_key_file = "{bus_key}"\n' if bus_key else "plain_bus = true\n"))
        self.env = {**os.environ, "SEMTRACE_POLICY_DIR": str(self.policies)}
        if not self.data.exists():
            assert run_cli("init", "--data-dir", str(self.data), "--key-file",
                           str(key)).returncode == 0

    def args(self) -> list[str]:
        return ["--data-dir", str(self.data), "--key-file", str(self.key)]

    def _starts(self) -> int:
        return self.log.read_text().count('"cluster_start"') if self.log.exists() else 0

    def launch(self) -> Node:
        self._before = self._starts()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve", *self.args(), "--own", self.own,
             "--node", self.name, "--metrics", f"127.0.0.1:{self.metrics_port}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        return self

    def wait_up(self) -> Node:
        """Until the node consumes its partitions (after the models loaded)."""
        assert self.proc is not None
        starting = Starting(self.proc.pid)
        while not starting.given_up():
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited: {self.log.read_text()[-2000:]}")
            if self._starts() > self._before:
                return self
            time.sleep(0.3)
        raise AssertionError(f"node {self.name} did not come up ({starting})")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def lookup(self, tenant: str, rid: str) -> dict[str, Any]:
        with Client(self.sock, timeout=30) as c:
            return c.request({"v": 1, "op": "lookup", "tenant": tenant, "request_id": rid})

    def records(self) -> int:
        with Client(self.sock, timeout=30) as c:
            return int(c.request({"v": 1, "op": "stats"})["store"]["records"])


def start_all(*nodes: Node) -> None:
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_up()


def _stop_all(*nodes: Node) -> None:
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            n.stop()


@pytest.fixture(scope="module")
def bus_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's bus key file, shared by its nodes and gateways (mode 0600)."""
    path = tmp_path_factory.mktemp("bus") / "bus.key"
    r = run_cli("cluster", "bus-key", "new", str(path))
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def keys(bus_key: Path) -> BusKeys:
    from appliance.keys.bus import load_bus_keys

    return load_bus_keys(bus_key)


@pytest.fixture(scope="module")
def cluster(nats_url: str, bus_key: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    tmp = tmp_path_factory.mktemp("cluster")
    key = tmp / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    nodes = {"a": Node(tmp, "a", nats_url, key, "0-1", bus_key=bus_key),
             "b": Node(tmp, "b", nats_url, key, "2-3", bus_key=bus_key)}
    start_all(*nodes.values())
    yield nodes
    _stop_all(*nodes.values())


@dataclass
class Plain:
    """A node that opted out of sealing (plain_bus = true), alone on its own nats-server."""

    url: str
    node: Node


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    tmp = tmp_path_factory.mktemp("plain")
    key = tmp / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp / "nats") as url:
        node = Node(tmp, "p", url, key, f"0-{PARTITIONS - 1}", bus_key=None)
        start_all(node)
        yield Plain(url, node)
        _stop_all(node)


def owner(nodes: dict[str, Node], tenant: str) -> Node:
    return next(n for n in nodes.values()
                if partition_of(tenant, PARTITIONS) in _parts(n.own))


def _parts(spec: str) -> set[int]:
    from appliance.cluster.partition import parse_own

    return set(parse_own(spec, PARTITIONS))


def stream(tenants: list[str], tag: str, *, start_min: int = 0) -> list[dict[str, Any]]:
    """Two users per tenant, each with two conversations an hour apart, all interleaved."""
    rows = []
    for ti, tenant in enumerate(tenants):
        for u in range(2):
            for c in range(2):
                conv = CONVERSATIONS[(ti + u + c) % len(CONVERSATIONS)]
                for turn, text in enumerate(conv):
                    minute = start_min + c * 60 + turn * 2 + u
                    rows.append({"v": 1, "op": "ingest", "tenant": tenant,
                                 "request_id": f"{tag}-{tenant}-u{u}-c{c}-{turn}",
                                 "user_id": f"{tenant}-user{u}", "text": text,
                                 "ts": (TODAY + timedelta(minutes=minute, seconds=ti))
                                 .strftime("%Y-%m-%dT%H:%M:%SZ")})
    return sorted(rows, key=lambda r: (r["ts"], r["request_id"]))


def single_node_threads(pipeline: Any,
                        rows: list[dict[str, Any]]) -> dict[str, set[frozenset[str]]]:
    """Each tenant's threads (as sets of request ids) when one pipeline replays the stream."""
    from appliance.protocol import parse_request

    thread_of = {}
    for row in rows:
        prompt = parse_request(row, max_text_chars=32_768).prompt
        assert prompt is not None
        (outcome,) = pipeline.process([prompt])
        thread_of[row["request_id"]] = outcome.thread_id
    return group(rows, thread_of)


def group(rows: list[dict[str, Any]], thread_of: dict[str, Any]) -> dict[str, set[frozenset[str]]]:
    by_thread: dict[tuple[str, Any], set[str]] = defaultdict(set)
    for row in rows:
        by_thread[(row["tenant"], thread_of[row["request_id"]])].add(row["request_id"])
    out: dict[str, set[frozenset[str]]] = defaultdict(set)
    for (tenant, _), rids in by_thread.items():
        out[tenant].add(frozenset(rids))
    return dict(out)


class Enriched(NatsTap):
    """Everything published on semtrace.enriched.> while the block runs (own loop thread).

    Each answer must be sealed for its subject's tenant in the bus key: it is opened
    as a gateway would; one that is plain or does not open is counted in `unsealed`.
    """

    def __init__(self, url: str, keys: BusKeys) -> None:
        super().__init__(url, "semtrace.enriched.>")
        self.keys = keys
        self.replies: list[dict[str, Any]] = []
        self.unsealed = 0

    def on_message(self, msg: Any) -> None:
        from appliance.cluster.client import open_reply
        from appliance.errors import SemtraceError
        from appliance.keys.bus import is_sealed

        try:
            if not is_sealed(msg.data):
                raise SemtraceError("plain")
            reply = open_reply(msg.data, msg.subject.rsplit(".", 1)[1], self.keys)
        except SemtraceError:
            self.unsealed += 1
            return
        self.replies.append(reply)

    def ids(self) -> set[str]:
        return {r["request_id"] for r in list(self.replies) if r.get("ok")}

    def wait_for(self, ids: set[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.ids():
            assert self.unsealed == 0, f"{self.unsealed} answers not sealed in the bus key"
            assert time.monotonic() < deadline, f"{len(ids - self.ids())} never enriched"
            time.sleep(0.2)
        assert self.unsealed == 0, f"{self.unsealed} answers not sealed in the bus key"


def test_eight_tenants_over_two_nodes_thread_as_one_node_would(
        cluster: dict[str, Node], nats_url: str, keys: BusKeys, pipeline: Any) -> None:
    from appliance.cluster.client import NatsClient

    rows = stream(TENANTS, "s")
    assert {partition_of(t, PARTITIONS) for t in TENANTS} == {0, 1, 2, 3}
    replies: dict[str, dict[str, Any]] = {}
    with Enriched(nats_url, keys) as enriched, \
            NatsClient(nats_url, timeout=60, bus_keys=keys) as gateway:
        for i, row in enumerate(rows):
            if i % 4 == 3:  # fire-and-forget: the answer goes to semtrace.enriched.<tenant>
                assert gateway.publish(row)["queued"] is True
            else:  # request-reply: the socket's reply, after commit
                replies[row["request_id"]] = gateway.request(row)
        fired = {r["request_id"] for i, r in enumerate(rows) if i % 4 == 3}
        enriched.wait_for(fired)
        assert not enriched.ids() & set(replies)  # a requester's answer went to it alone
    for rid, reply in replies.items():
        assert reply["ok"] and reply["request_id"] == rid and reply["duplicate"] is False
        assert set(reply) >= {"conversation_id", "position", "intent", "similarity", "trace_id"}
    thread_of = {}
    for row in rows:
        home = owner(cluster, row["tenant"])
        other = next(n for n in cluster.values() if n is not home)
        found = home.lookup(row["tenant"], row["request_id"])
        assert found["ok"], found
        # not forwarded: the other node says where the tenant's records are (it said only
        # "No recorded request with this id." of a request its owner stored)
        tenant, p = row["tenant"], partition_of(row["tenant"], PARTITIONS)
        assert other.lookup(tenant, row["request_id"])["error"] == {
            "code": "not_found", "message": (
                f"No recorded request with this id on this node: tenant {tenant}'s partition "
                f"({p}) is owned by another node, which holds its records; a lookup is not "
                f"forwarded, so ask that node (`semtrace cluster status --tenant {tenant}` "
                "names it).")}
        assert home.lookup(tenant, "never-sent")["error"]["message"] == \
            "No recorded request with this id."
        thread_of[row["request_id"]] = found["conversation_id"]
        if row["request_id"] in replies:
            assert replies[row["request_id"]]["conversation_id"] == found["conversation_id"]
    assert group(rows, thread_of) == single_node_threads(pipeline, rows)


# The opt-out's own warning needs a node that opted out: `plain`, not the sealed cluster.
def test_a_node_that_opted_out_of_sealing_says_so_once_at_each_start(plain: Plain) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import PLAIN_BUS_WARNING

    assert "plain text" in PLAIN_BUS_WARNING and "security.bus_key_file" in PLAIN_BUS_WARNING
    node = plain.node
    with NatsClient(plain.url, timeout=60, plain_bus=True) as gateway:
        for i, text in enumerate(CONVERSATIONS[0]):
            reply = gateway.request({"v": 1, "op": "ingest", "tenant": "t1", "user_id": "dev",
                                     "request_id": f"warned-{i}", "text": text})
            assert reply["ok"], reply
    assert node.stop() == 0
    start_all(node)  # a second start: a second warning
    warned = [json.loads(x) for x in node.log.read_text().splitlines() if '"plain_bus"' in x]
    assert len(warned) == node._starts() == 2  # one line per start, not per message
    for w in warned:  # the fixed sentence, nothing of a message
        assert w["level"] == "warning" and w["msg"] == PLAIN_BUS_WARNING
        assert set(w) <= {"ts", "level", "logger", "msg", "event", "node"}


def test_a_body_naming_another_tenant_than_its_subject_is_refused(
        cluster: dict[str, Node], nats_url: str, keys: BusKeys) -> None:
    """Even sealed with the cluster's key for t1's subject, a body naming t2 stores nothing."""
    import nats

    from appliance.cluster.client import open_reply
    from appliance.keys.bus import ingest_aad

    async def spoof() -> dict[str, Any]:
        nc = await nats.connect(nats_url)
        row = {"v": 1, "op": "ingest", "tenant": "t2", "user_id": "mallory",
               "request_id": "spoof-1", "text": "Plant this in tenant t2."}
        sealed = keys.seal(json.dumps(row).encode(), ingest_aad("t1"))
        msg = await nc.request("semtrace.ingest.t1", sealed, timeout=60)
        await nc.close()
        return open_reply(msg.data, "t1", keys)

    reply = asyncio.run(spoof())
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert "tenant" in reply["error"]["message"]
    for tenant in ("t1", "t2"):
        assert owner(cluster, tenant).lookup(tenant, "spoof-1")["ok"] is False


# A node without a bus key exists only by the opt-out: `plain`.
def test_a_node_without_the_bus_key_refuses_a_sealed_message_with_one_sentence(
        plain: Plain, tmp_path: Path) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import create_key_file, load_bus_keys

    create_key_file(tmp_path / "bus.key")
    row = {"v": 1, "op": "ingest", "tenant": "t1", "user_id": "dev", "request_id": "sealed-1",
           "text": "Summarise the contract for lena.park@example.com."}
    with NatsClient(plain.url, timeout=60, bus_keys=load_bus_keys(tmp_path / "bus.key")) as gw:
        reply = gw.request(row)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert "sealed with a bus key, but this node has none" in reply["error"]["message"]
    assert plain.node.lookup("t1", "sealed-1")["error"]["code"] == "not_found"
    log = plain.node.log.read_text()
    assert "Traceback" not in log and "lena.park" not in log


# It reads the prompts' raw bytes on the wire, which sealing hides: `plain`.
def test_integrations_take_a_nats_url_and_can_redact_before_the_bus(plain: Plain) -> None:
    import nats

    from appliance.integrations.decorator import Semtrace

    seen: list[bytes] = []

    async def listen(stop: asyncio.Event) -> None:
        nc = await nats.connect(plain.url)

        async def cb(msg: Any) -> None:
            seen.append(msg.data)

        await nc.subscribe("semtrace.part.>", cb=cb)
        await nc.flush()  # the server has the subscription: what is published now is seen
        listening.set()
        await stop.wait()
        await nc.close()

    import threading

    loop = asyncio.new_event_loop()
    stop, listening = asyncio.Event(), threading.Event()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    task = asyncio.run_coroutine_threadsafe(listen(stop), loop)
    assert listening.wait(120) or task.result(0)  # not a fixed sleep: a slow host missed it
    raw = Semtrace(plain.url, tenant="t3", timeout=60, plain_bus=True)
    careful = Semtrace(plain.url, tenant="t3", timeout=60, redact=True, plain_bus=True)
    # Presidio loads in the background; a prompt before it is ready is not sent (after
    # `timeout`): a loaded host took longer than that, and this test is not about the load
    assert careful.redact._ready.wait(600)  # type: ignore[union-attr]
    with raw.turn(user_id="dev", text="What is a monad in Haskell?") as first:
        pass
    with careful.turn(user_id="dev", text="Email the summary to jane.roe@example.com "
                      "please.") as second:
        pass
    raw.close()
    careful.close()
    loop.call_soon_threadsafe(stop.set)
    task.result(10)
    loop.call_soon_threadsafe(loop.stop)
    assert first.reply is not None and first.reply["ok"] and first.conversation_id
    assert second.reply is not None and second.reply["ok"]
    wire = b"".join(seen)
    assert b"monad" in wire  # without redaction the prompt is raw text on the bus
    assert b"jane.roe@example.com" not in wire and b"<EMAIL_ADDRESS>" in wire


def test_status_and_metrics_show_owners_and_consumers(cluster: dict[str, Node],
                                                      nats_url: str) -> None:
    r = run_cli("cluster", "status", "--nats", nats_url, "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["partitions"] == PARTITIONS
    assert status["nodes"] == {"a": [0, 1], "b": [2, 3]}
    assert [s["owner"] for s in status["states"]] == ["a", "a", "b", "b"]
    assert all(s["lag"] == 0 for s in status["states"])
    # the gauge is the node's last poll of JetStream (every LAG_EVERY_S): on a loaded host it
    # can still show the previous test's messages in work, so wait for a poll after they settled
    want = 'semtrace_cluster_consumer_lag{node="a",partition="0"} 0.0'
    deadline = time.monotonic() + 60
    while True:
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{cluster['a'].metrics_port}/metrics", timeout=10).read().decode()
        if want in text or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert want in text
    check_text(text)  # as Prometheus reads it: a node's collectors, on a real node
    assert 'semtrace_cluster_consumer_lag{node="a",partition="1"}' in text
    assert 'partition="2"' not in text  # a node reports the partitions it owns
    human = run_cli("cluster", "status", "--nats", nats_url)
    assert "node a: partitions 0-1" in human.stdout


def test_a_tenant_no_nats_subject_can_carry_is_refused_by_every_nodes_socket(
        cluster: dict[str, Node]) -> None:
    """Before, node a stored a dotted tenant of its own partitions, and answered one of b's
    `not_forwarded` ... "retry shortly": a tenant only one node could take."""
    from appliance.client import Client
    from appliance.service.dispatch import OFF_BUS_TENANT

    names = [f"acme.eu{i}" for i in range(50)]
    mine = next(t for t in names if partition_of(t, PARTITIONS) in (0, 1))
    theirs = next(t for t in names if partition_of(t, PARTITIONS) in (2, 3))
    a = cluster["a"]
    before = a.records()
    with Client(a.sock, timeout=60) as c:
        for i, tenant in enumerate((mine, theirs)):
            reply = c.request({"v": 1, "op": "ingest", "tenant": tenant, "user_id": "ana",
                               "request_id": f"dotted-{i}", "text": "How do I file VAT?"})
            assert reply == {"request_id": f"dotted-{i}", "ok": False, "error": {
                "code": "bad_request", "message": OFF_BUS_TENANT}}, reply
    assert a.records() == before


def test_kill_9_mid_stream_loses_no_acknowledged_record_and_stores_none_twice(
        cluster: dict[str, Node], nats_url: str, keys: BusKeys, pipeline: Any) -> None:
    from appliance.cluster.client import NatsClient

    a, b = cluster["a"], cluster["b"]
    before = {n: node.records() for n, node in cluster.items()}
    tenants = [f"k{i}" for i in range(1, 9)]
    rows = stream(tenants, "k", start_min=300)
    on_a = [r for r in rows if owner(cluster, r["tenant"]) is a]
    assert len(on_a) >= 24
    with Enriched(nats_url, keys) as enriched:
        with NatsClient(nats_url, timeout=60, bus_keys=keys) as gateway:
            for row in rows:
                gateway.publish(row)
        deadline = time.monotonic() + 180
        while len(enriched.ids() & {r["request_id"] for r in on_a}) < 8:
            assert time.monotonic() < deadline and enriched.unsealed == 0
            time.sleep(0.05)
        a.stop(signal.SIGKILL)
        acknowledged = set(enriched.ids())
        assert not {r["request_id"] for r in on_a} <= acknowledged  # killed mid-stream
        a.launch().wait_up()
        enriched.wait_for({r["request_id"] for r in rows})
    assert acknowledged <= enriched.ids()
    assert a.records() - before["a"] == len(on_a)  # each record once: none lost, none twice
    assert b.records() - before["b"] == len(rows) - len(on_a)
    thread_of = {r["request_id"]: owner(cluster, r["tenant"]).lookup(
        r["tenant"], r["request_id"])["conversation_id"] for r in rows}
    assert group(rows, thread_of) == single_node_threads(pipeline, rows)


def test_a_second_owner_of_a_partition_is_refused(cluster: dict[str, Node], nats_url: str,
                                                   bus_key: Path, tmp_path: Path) -> None:
    intruder = Node(tmp_path, "c", nats_url, cluster["a"].key, "1", bus_key=bus_key)
    intruder.launch()
    assert intruder.proc is not None
    assert intruder.proc.wait(timeout=240) != 0
    assert "Partition 1 is owned by node 'a'" in intruder.log.read_text()
    assert "Traceback" not in intruder.log.read_text()


def test_moving_a_partition_keeps_its_conversations(cluster: dict[str, Node], nats_url: str,
                                                    keys: BusKeys) -> None:
    from appliance.cluster.client import NatsClient

    a, b = cluster["a"], cluster["b"]
    moved = [t for t in TENANTS if partition_of(t, PARTITIONS) == 1]
    first = next(r for r in stream(TENANTS, "s") if r["tenant"] == moved[0])
    # (a duplicate if recorded before)
    with NatsClient(nats_url, timeout=60, bus_keys=keys) as gateway:
        thread = gateway.request(first)["conversation_id"]
    assert a.lookup(first["tenant"], first["request_id"])["conversation_id"] == thread
    assert a.stop() == 0 and b.stop() == 0
    follow_up = {**first, "request_id": "after-move",
                 "text": FOLLOW_UPS[next(i for i, c in enumerate(CONVERSATIONS)
                                         if first["text"] in c)],
                 "ts": (TODAY + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    with NatsClient(nats_url, timeout=30, bus_keys=keys) as gateway:
        gateway.publish(follow_up)  # both nodes down: it queues in JetStream
    status = json.loads(run_cli("cluster", "status", "--nats", nats_url, "--json").stdout)
    assert status["states"][1]["owner"] is None and status["states"][1]["lag"] == 1
    export = a.data.parent / "p1.export"
    env = a.env
    r = run_cli("cluster", "export", *a.args(), "--partitions", "1", "--out", str(export),
                env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("cluster", "import", *b.args(), str(export), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert moved[0] in json.loads(r.stdout)["tenants"]
    assert all(partition_of(t, PARTITIONS) == 1 for t in json.loads(r.stdout)["tenants"])
    assert not export.exists()  # it held data keys
    r = run_cli("cluster", "forget", *a.args(), "--partitions", "1", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    a.own, b.own = "0", "1-3"
    with Enriched(nats_url, keys) as enriched:
        start_all(a, b)
        enriched.wait_for({"after-move"})
        reply = next(x for x in enriched.replies if x["request_id"] == "after-move")
    assert reply["conversation_id"] == thread  # the conversation went on where it was
    assert b.lookup(first["tenant"], first["request_id"])["conversation_id"] == thread
    assert a.lookup(first["tenant"], first["request_id"])["error"]["code"] == "not_found"
    again = run_cli("cluster", "import", *b.args(), str(export), env=env)
    assert again.returncode != 0 and "Stop the node first" in again.stderr


def test_sealed_nodes_never_warn_of_plain_text(cluster: dict[str, Node]) -> None:
    """After every start of the tests above (kill -9, the move): no plain_bus line."""
    for node in cluster.values():
        log = node.log.read_text()
        assert node._starts() >= 2 and '"plain_bus"' not in log and "Traceback" not in log
