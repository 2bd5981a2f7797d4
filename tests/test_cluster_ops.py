"""What a platform engineer running a cluster sees: a real nats-server, real nodes.

Requests to a server that nothing listens on yet, and a node whose owner claim
another node took while it was cut off from NATS.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import sealed_cluster
from test_cluster import PARTITIONS, TODAY, Node, nats_server, start_all
from test_spine import run_cli

from appliance.cluster.bus import NO_SERVER_REMEDY
from appliance.cluster.partition import partition_of

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
    assert "or it is shutting down (a restart)" in message  # also answered so as it stops


def test_a_gateway_cut_off_from_nats_says_nothing_was_sent_and_closes_cleanly(
        tmp_path: Path) -> None:
    """NATS went away under a running gateway: a publish answered 'queued' and a request
    'stays queued on the bus' (both only in the client's memory, lost when it stops), and
    closing raised nats-py's ConnectionReconnectingError."""
    import subprocess
    import sys

    script = tmp_path / "gateway.py"
    script.write_text(f"""
import json, sys, time
from appliance.cluster.client import NatsClient
from appliance.errors import SemtraceError
from appliance.keys.bus import load_bus_keys
gw = NatsClient(sys.argv[1], timeout=3, bus_keys=load_bus_keys({str(tmp_path / "bus.key")!r}))
print("connected", flush=True)
sys.stdin.readline()  # the server is gone
deadline = time.monotonic() + 30
while gw._inner._nc.is_connected and time.monotonic() < deadline:
    time.sleep(0.1)
row = {{"v": 1, "op": "ingest", "tenant": "acme", "user_id": "ana", "text": "Hi there"}}
out = {{}}
for op in ("publish", "request"):
    try:
        out[op] = getattr(gw, op)({{**row, "request_id": "r-" + op}})
    except SemtraceError as exc:
        out[op] = str(exc)
gw.close()
print(json.dumps(out), flush=True)
""")
    from appliance.keys.bus import create_key_file

    create_key_file(tmp_path / "bus.key")
    with nats_server(tmp_path / "nats") as url:
        gateway = subprocess.Popen([sys.executable, str(script), url], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gateway.stdout is not None and gateway.stdin is not None
        assert gateway.stdout.readline().strip() == "connected"
    gateway.stdin.write("\n")
    gateway.stdin.flush()
    out, err = gateway.communicate(timeout=120)
    assert gateway.returncode == 0, err
    said = json.loads(out.strip().splitlines()[-1])
    for op, what in (("publish", "prompt"), ("request", "request")):
        assert said[op] == ("The NATS server is unreachable (this gateway is reconnecting to "
                            f"it); the {what} was not sent."), said
    assert "Traceback" not in err and "Error" not in err


class Ops:
    """A nats-server, the cluster's bus key, and node `a` owning partitions 0-1."""

    def __init__(self, url: str, bus_key: Path, a: Node) -> None:
        self.url, self.bus_key, self.a = url, bus_key, a


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    with sealed_cluster(tmp_path_factory.mktemp("ops")) as bus:
        a = bus.node("a", "0-1")
        start_all(a)
        yield Ops(bus.url, bus.bus_key, a)


def _ingest(tenant: str, rid: str, text: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": tenant, "request_id": rid, "user_id": "ana",
            "text": text, "ts": (TODAY.replace(hour=10)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _status(url: str) -> dict[str, Any]:
    r = run_cli("cluster", "status", "--nats", url, "--json")
    assert r.returncode == 0, r.stderr
    status: dict[str, Any] = json.loads(r.stdout)
    return status


def test_a_node_whose_claim_another_node_took_stops_consuming_that_partition(
        ops: Ops) -> None:
    """Node a was cut off from NATS longer than owner_ttl_s: its claim on partition 1
    expired and node c claimed it (as `Ownership.claim` does at c's start). When a's
    heartbeat comes back it must not write over c's claim and go on consuming beside
    c, which would split partition 1's conversations over two nodes."""
    import nats

    from appliance.cluster.client import NatsClient
    from appliance.cluster.owners import Ownership
    from appliance.keys.bus import load_bus_keys

    a = ops.a
    moved = next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == 1)
    stays = next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == 0)

    async def take_over() -> Ownership:
        nc = await nats.connect(ops.url)
        kv = await nc.jetstream().key_value("semtrace_owners")
        await kv.delete("p1")  # a's claim expired while a could not refresh it
        c = Ownership(kv, "c", [1], 600.0)
        await c.claim()
        deadline = time.monotonic() + 60
        while '"partition_lost"' not in a.log.read_text():  # a's next heartbeat
            assert time.monotonic() < deadline, "node a never noticed"
            await asyncio.sleep(0.2)
        holder = json.loads((await kv.get("p1")).value)["node"]
        await c.release()
        await nc.close()
        assert holder == "c"  # c's claim stands
        return c

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(take_over())
    finally:
        loop.close()
    keys = load_bus_keys(ops.bus_key)
    with NatsClient(ops.url, timeout=60, bus_keys=keys) as gateway:
        gateway.publish(_ingest(moved, "after-loss", "Which trains run to Lyon tonight?"))
        # a still consumes partition 0: its answer comes after the publish above was stored
        assert gateway.request(_ingest(stays, "still-mine", "How do I reset my VPN?"))["ok"]
    assert a.lookup(moved, "after-loss")["error"]["code"] == "not_found"
    states = _status(ops.url)["states"]
    assert states[1]["lag"] == 1 and states[0]["owner"] == "a"
    log = [json.loads(x) for x in a.log.read_text().splitlines() if '"partition_lost"' in x]
    assert len(log) == 1 and log[0]["partition"] == 1 and log[0]["holder"] == "c"
    assert "Partition 1 was claimed by node 'c'" in log[0]["msg"]
    # restarted once c is gone, a takes partition 1 back and stores the prompt once
    assert a.stop() == 0
    start_all(a)
    deadline = time.monotonic() + 120
    while not a.lookup(moved, "after-loss").get("ok"):
        assert time.monotonic() < deadline, "the queued prompt never reached node a"
        time.sleep(0.3)
    assert _status(ops.url)["states"][1]["owner"] == "a"
    assert "Traceback" not in a.log.read_text()


def _serve(node: Node, *extra: str) -> tuple[int, list[str]]:
    """Run `serve --nats` for `node` until it exits: its exit code and its stderr lines."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "appliance", "serve", *node.args(), "--own",
                        node.own, "--node", node.name, *extra], env=node.env,
                       capture_output=True, text=True, timeout=600)
    return r.returncode, r.stderr.splitlines()


def test_a_node_that_cannot_join_says_so_before_it_loads_or_touches_anything(
        ops: Ops, tmp_path: Path) -> None:
    """A partition a live node owns, a URL nothing answers at: one sentence, and nothing
    else (before, the node loaded its models, ran its retention and daily-release jobs on
    its store and served its socket for a minute, then said it)."""
    from test_cluster import _free_port

    intruder = Node(tmp_path, "z", ops.url, ops.a.key, "1", bus_key=ops.bus_key)
    code, lines = _serve(intruder)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("semtrace: Partition 1 is owned by node 'a' (alive ")
    nowhere = Node(tmp_path, "y", f"nats://127.0.0.1:{_free_port()}", ops.a.key, "2",
                   bus_key=ops.bus_key)
    code, lines = _serve(nowhere)
    assert code == 1 and lines == [
        f"semtrace: No NATS server answers at {nowhere.url} ({NO_SERVER_REMEDY})."]
    for node in (intruder, nowhere):
        assert not node.sock.exists() and not (node.data / "semtrace.lock").exists()
    assert _status(ops.url)["nodes"] == {"a": [0, 1]}


def test_credentials_the_server_refuses_are_named_in_one_sentence(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("not-the-password\n")
    password.chmod(0o600)
    env = {"SEMTRACE_POLICY_DIR": str(tmp_path / "policies")}
    import shutil

    from appliance.config import policy_dir

    shutil.copytree(policy_dir(), tmp_path / "policies")
    (tmp_path / "policies" / "cluster.toml").write_text(
        f'[security]\nuser = "node"\npassword_file = "{password}"\n')
    auth = 'authorization { user: node, password: "s3cret-pass" }\n'
    with nats_server(tmp_path / "nats", auth) as url:
        r = run_cli("cluster", "status", "--nats", url, env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"semtrace: The NATS server at {url} refused these "
                                "credentials (authorization violation); check [security] in "
                                "cluster.toml.")
    assert "not-the-password" not in r.stderr


def test_status_names_the_node_that_holds_a_tenant(ops: Ops) -> None:
    """The node to query, erase or reveal on: a tenant's partition and its owner."""
    here = next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == 0)
    nobody = next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == 3)
    r = run_cli("cluster", "status", "--nats", ops.url, "--tenant", here, "--tenant", nobody,
                "--json")
    assert r.returncode == 0, r.stderr
    homes = {h["tenant"]: h for h in json.loads(r.stdout)}
    assert homes[here]["partition"] == 0 and homes[here]["owner"] == "a"
    assert homes[nobody]["partition"] == 3 and homes[nobody]["owner"] is None
    human = run_cli("cluster", "status", "--nats", ops.url, "--tenant", here)
    assert human.stdout.startswith(f"tenant {here}: partition 0, node a (heard from ")
    bad = run_cli("cluster", "status", "--nats", ops.url, "--tenant", "acme.eu")
    assert bad.returncode == 2 and "--tenant" in bad.stderr and "Traceback" not in bad.stderr


def test_status_says_when_each_owner_was_last_heard_from(ops: Ops) -> None:
    """Before: the table named an owner with no age, so a node killed a moment ago looked
    as alive as a running one until its claim expired (owner_ttl_s)."""
    import re

    human = run_cli("cluster", "status", "--nats", ops.url)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    header = next(x for x in lines if x.lstrip().startswith("part"))
    assert "heard from" in header
    rows = {int(x.split()[0]): x for x in lines if re.match(r"\s+\d+\s", x)}
    seen = re.search(r"\ba\s+(\d+) s ago\s", rows[0])
    assert seen is not None, rows[0]
    assert int(seen.group(1)) <= 6  # within the claim's time to live (owner_ttl_s = 6)
    assert re.search(r"\(none: queueing\)\s+-\s", rows[3]), rows[3]


class OlderNode:
    """A claim on partition 3 by node 'old' of semtrace 0.0.9, refreshed every second
    (as an earlier version's node would hold it) while the block runs."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self._loop = asyncio.new_event_loop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._run(),), daemon=True)
        self._ready = threading.Event()

    async def _run(self) -> None:
        import nats

        nc = await nats.connect(self.url)
        kv = await nc.jetstream().key_value("semtrace_owners")
        while not self._stop.is_set():
            await kv.put("p3", json.dumps({"node": "old", "since": time.time(),
                                           "refreshed": time.time(),
                                           "version": "0.0.9"}).encode())
            self._ready.set()
            await asyncio.sleep(1)
        await kv.delete("p3")
        await nc.close()

    def __enter__(self) -> OlderNode:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_status_shows_each_nodes_version_and_says_when_they_differ(ops: Ops) -> None:
    from appliance import __version__

    with OlderNode(ops.url):
        status = _status(ops.url)
        human = run_cli("cluster", "status", "--nats", ops.url)
        assert ops.a.stop() == 0
        start_all(ops.a)  # a node starting beside it says so once
    warned = [json.loads(x) for x in ops.a.log.read_text().splitlines()
              if '"mixed_versions"' in x]
    assert len(warned) == 1 and warned[0]["level"] == "warning", warned
    assert "old 0.0.9" in warned[0]["msg"] and warned[0]["nodes"] == ["old"]
    assert status["versions"] == {"a": __version__, "old": "0.0.9"}
    assert status["nodes"] == {"a": [0, 1], "old": [3]}
    assert f"node a: partitions 0-1, semtrace {__version__}" in human.stdout
    assert "node old: partition 3, semtrace 0.0.9" in human.stdout  # was partitions 3
    assert "The nodes run different versions" in human.stdout
    alone = run_cli("cluster", "status", "--nats", ops.url)
    assert "different versions" not in alone.stdout


def test_export_picks_the_tenants_of_the_partition_count_the_node_served(
        ops: Ops, tmp_path: Path) -> None:
    """Last here: it stops node a. The node served 4 partitions (from its cluster.toml);
    the doc's export command run where cluster.toml says the default 16 (or --of left
    out) must still move partition 1 of 4, not partition 1 of 16's tenants."""
    import os

    a = ops.a
    moved = next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == 1)
    assert partition_of(moved, 16) != 1  # another count would pick other tenants
    assert a.lookup(moved, "after-loss")["ok"]
    assert a.stop() == 0
    defaults = {k: v for k, v in os.environ.items() if k != "SEMTRACE_POLICY_DIR"}
    wrong = run_cli("cluster", "export", *a.args(), "--partitions", "1", "--of", "16",
                    "--out", str(tmp_path / "wrong.semtrace"), env=defaults)
    assert wrong.returncode != 0 and not (tmp_path / "wrong.semtrace").exists()
    assert wrong.stderr.strip() == ("semtrace: This node served 4 partitions (--partitions at "
                                    "its last start); --of 16 would pick other tenants. "
                                    "Nothing was changed.")
    out = tmp_path / "p1.semtrace"
    r = subprocess_json("cluster", "export", *a.args(), "--partitions", "1", "--out",
                        str(out), "--json", env=defaults)
    assert r["tenants"] == [moved] and r["records"] >= 1
    forget = run_cli("cluster", "forget", *a.args(), "--partitions", "1", "--of", "16",
                     "--yes", env=defaults)
    assert forget.returncode != 0 and "would pick other tenants" in forget.stderr


def subprocess_json(*args: str, env: dict[str, str]) -> Any:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_import_refuses_a_node_whose_pseudonyms_come_from_another_key(tmp_path: Path) -> None:
    """Scaling out an appliance installed with a passphrase: rotated to the cluster key file,
    it opens exports like every node, but its pseudonyms still come from its first key, so
    its users would arrive on a node initialised with the key file as strangers."""
    from appliance.cluster.partition import partition_of as part_of

    password, key = tmp_path / "passphrase", tmp_path / "cluster.key"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("init", "--data-dir", str(a), "--passphrase-file", str(password)
                   ).returncode == 0  # as install.sh does
    day = TODAY.strftime("%Y-%m-%d")
    src = tmp_path / "stream.jsonl"
    src.write_text("".join(json.dumps({"tenant": "acme", "user_id": "ana", "request_id": f"r{i}",
                                       "ts": f"{day}T09:0{i}:00Z", "text": text}) + "\n"
                           for i, text in enumerate(["How do I bake sourdough bread?",
                                                     "How long should the dough rise?"])))
    r = run_cli("replay", str(src), "--out", str(tmp_path / "out.jsonl"), "--data-dir", str(a),
                "--passphrase-file", str(password))
    assert r.returncode == 0, r.stderr
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    r = run_cli("keys", "rotate", "--data-dir", str(a), "--passphrase-file", str(password),
                "--new-key-file", str(key))
    assert r.returncode == 0, r.stderr
    assert run_cli("init", "--data-dir", str(b), "--key-file", str(key)).returncode == 0
    export = tmp_path / "acme.semtrace"
    code, shown = _on_a_terminal("cluster", "export", "--data-dir", str(a), "--key-file",
                                 str(key), "--partitions", str(part_of("acme", 16)), "--of",
                                 "16", "--out", str(export))
    assert code == 0, shown
    assert "export" in shown and "%" in shown  # a progress bar on the terminal
    r = run_cli("cluster", "import", "--data-dir", str(b), "--key-file", str(key), str(export))
    assert r.returncode != 0
    sentence = r.stderr.strip()
    assert sentence.startswith(f"semtrace: {export} was exported by a node whose user "
                               "pseudonyms come from another key") and "\n" not in sentence
    assert sentence.endswith("Nothing was imported.")
    listed = run_cli("threads", "list", "--data-dir", str(b), "--key-file", str(key), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def _on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the command with its stderr on a pseudo-terminal (progress bars show only there):
    its exit code and what that terminal received."""
    import os
    import pty
    import subprocess
    import sys

    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=side)
    os.close(side)
    received = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the command exited and closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(main)
    return proc.wait(timeout=600), received.decode(errors="replace")
