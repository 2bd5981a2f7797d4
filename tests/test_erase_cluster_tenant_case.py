"""`erase --tenant Acme` on a node of a cluster, when the cluster knows only 'acme'
(tenant names are case-sensitive). On a single host the command notes that the data dir
never heard of 'Acme' and names 'acme' (test_erase_everywhere); on a cluster, when another
node owns 'Acme''s partition, the request went to it and nothing was said, so a mistyped
DSAR read as pending, then done, while the user's records stayed in 'acme'. Now the
tenants the nodes noted in NATS (`tenants_known.py`) count too. Real nats-server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from test_cluster import PARTITIONS, Node, nats_server
from test_spine import run_cli

from appliance.cluster.owners import owners_bucket
from appliance.cluster.partition import partition_of
from appliance.cluster.tenants_known import note_tenants, tenants_bucket

pytestmark = pytest.mark.slow


async def _node_a(url: str) -> None:
    """Node 'a' claims the partition of 'Acme' and has noted its one tenant, 'acme'."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    owners = await owners_bucket(js, ttl_s=600, replicas=1)
    now = time.time()
    await owners.put(f"p{partition_of('Acme', PARTITIONS)}",
                     json.dumps({"node": "a", "since": now, "refreshed": now}).encode())
    assert await note_tenants(await tenants_bucket(js, replicas=1), "a", ["acme"])
    await nc.close()


def test_erase_of_a_tenant_only_a_case_variant_of_is_known_on_the_cluster_says_so(
        tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        asyncio.run(_node_a(url))
        b = Node(tmp_path, "b", url, key, "0", bus_key=None)  # it only asks

        def erase(tenant: str, *extra: str) -> tuple[int, str, str]:
            r = run_cli("erase", *b.args(), "--tenant", tenant, "--user", "olga",
                        "--reason", "DSAR 2026-98", "--wait", "1", *extra, env=b.env)
            return r.returncode, r.stdout, r.stderr

        mistyped, as_json, right = erase("Acme"), erase("Acme", "--json"), erase("acme")
    code, out, err = mistyped
    assert code == 8, out + err  # asked of node 'a', not applied within the wait
    assert "Traceback" not in err
    assert out.startswith("The erasure of u_") and " in Acme is pending: node 'a'" in out
    assert err.strip().endswith(
        "Note: neither this data dir nor the cluster's nodes have ever heard of tenant "
        "'Acme' (they know 'acme'): no data of it is stored and no policy names it. Tenant "
        "names are case-sensitive, as the gateway sends them: if this one is mistyped, the "
        "user's records were not searched where they are (a tombstone was asked of its owner "
        "all the same).")
    assert json.loads(as_json[1])["tenant_known"] is False
    assert "Note:" not in right[2] and right[0] == 8
