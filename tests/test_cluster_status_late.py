"""`semtrace cluster status` says which node has stopped refreshing its claims (killed,
hung, cut off) while those claims still stand: before, such a node was listed as the
owner of its partitions like a healthy one, a growing "heard from" the only sign. A real
nats-server whose owners bucket holds a live node's claim and one last refreshed long ago,
as a node killed with SIGKILL leaves it (the claim's `refreshed` is what status reads)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from test_cluster import PARTITIONS, nats_server
from test_spine import run_cli

from appliance import __version__

TTL_S = 600.0  # the bucket's: a claim written now stands that long whatever it says


def _claims(url: str, refreshed: dict[int, tuple[str, float]], user: str = "") -> None:
    """The stream, and a claim per partition: (node, its last refresh); `user`: "name:pass"
    to connect as."""
    from appliance.cluster import bus
    from appliance.cluster.owners import owners_bucket
    from appliance.cluster.stream import ensure_stream
    from appliance.config import ClusterSecurity, ClusterSettings

    settings = ClusterSettings(url=url, partitions=PARTITIONS, owner_ttl_s=TTL_S)

    async def put() -> None:
        nc = await bus.connect(url.replace("nats://", f"nats://{user}@") if user else url,
                               ClusterSecurity(), name="test", reconnect=False)
        try:
            js = nc.jetstream()
            await ensure_stream(js, settings, max_msg_size=1 << 20)
            kv = await owners_bucket(js, ttl_s=TTL_S, replicas=1)
            for p, (node, at) in refreshed.items():
                await kv.put(f"p{p}", json.dumps({
                    "node": node, "since": at, "refreshed": at, "instance": node,
                    "version": __version__}).encode())
        finally:
            await nc.close()

    bus.run(put())


def test_status_names_a_node_that_stopped_refreshing_its_claims(tmp_path: Path) -> None:
    from appliance.config import policy_dir

    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    with nats_server(tmp_path / "nats") as url:
        (policies / "cluster.toml").write_text(f'url = "{url}"\npartitions = {PARTITIONS}\n')
        env = {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)}
        now = time.time()
        _claims(url, {0: ("a", now), 1: ("a", now), 2: ("b", now - 500), 3: ("b", now - 500)})
        out = run_cli("cluster", "status", "--json", env=env)
        text = run_cli("cluster", "status", env=env)
        one = run_cli("cluster", "status", "--tenant", "acme", "--json", env=env)
    assert out.returncode == text.returncode == one.returncode == 0, out.stderr + text.stderr
    report = json.loads(out.stdout)
    assert report["owner_ttl_s"] == TTL_S
    assert list(report["late"]) == ["b"] and 500 <= report["late"]["b"] < 600
    assert [s["owner_late"] for s in report["states"]] == [False, False, True, True]
    assert [s["owner"] for s in report["states"]] == ["a", "a", "b", "b"]  # claims stand
    lines = text.stdout.splitlines()
    assert f"node a: partitions 0-1, semtrace {__version__}" in lines
    assert f"node b: partitions 2-3, semtrace {__version__}, LATE" in lines
    said = [x for x in lines if x.startswith("Node b has not refreshed its claims for ")]
    assert len(said) == 1 and re.fullmatch(
        r"Node b has not refreshed its claims for 5\d\d s \(it does every 200 s while it "
        r"runs\): it is stopped, killed, hung or cut off from NATS; its claims expire in "
        r"\d{1,3} s \(owner_ttl_s 600\), and its partitions then queue until a node takes "
        r"them\.", said[0]), said
    assert not any(x.startswith("Node a ") for x in lines)
    from appliance.cluster.partition import partition_of

    home = json.loads(one.stdout)[0]
    assert home["owner_late"] == (partition_of("acme", PARTITIONS) >= 2)


def test_status_reads_the_claims_without_a_consumer_of_the_owners_bucket(
        tmp_path: Path) -> None:
    """nats-py's `kv.keys()` made a consumer whose first pass could end before its first
    entry: 1 status read in 200 showed every partition ownerless while three nodes ran (and
    a start, `cluster reclaim`, `erase --all-tenants` and the erasure sweep read buckets the
    same way). Claims are now read from the bucket's stream without a consumer: shown here
    by a NATS user that may not create one, which `status` serves all the same."""
    from appliance.config import policy_dir

    password = tmp_path / "reader.password"
    password.write_text("r3ader\n")
    password.chmod(0o600)
    auth = ('authorization { users = [ { user: admin, password: "adm1n" }, '
            '{ user: reader, password: "r3ader", permissions: { publish: { allow: ['
            '"$JS.API.STREAM.INFO.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.DIRECT.GET.>", '
            '"$JS.API.STREAM.MSG.GET.>", "$JS.API.INFO", "_INBOX.>"] }, '
            'subscribe: { allow: ["_INBOX.>"] } } } ] }\n')
    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    with nats_server(tmp_path / "nats", auth) as url:
        now = time.time()
        _claims(url, {p: ("a" if p < 2 else "b", now) for p in range(PARTITIONS)},
                user="admin:adm1n")
        (policies / "cluster.toml").write_text(
            f'url = "{url}"\npartitions = {PARTITIONS}\n[security]\nuser = "reader"\n'
            f'password_file = "{password}"\n')
        out = run_cli("cluster", "status", "--json",
                      env={**os.environ, "SEMTRACE_POLICY_DIR": str(policies)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nodes"] == {"a": [0, 1], "b": [2, 3]}
