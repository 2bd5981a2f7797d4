"""What a node's socket adds when it forwards a prompt of another node's tenant to its owner.

Two `semtrace serve --nats` nodes and one nats-server on this host's loopback, sealed with
a bus key as in production; one tenant of the second node's partitions. Sequential sync
requests of that tenant, in turn: to its owner's socket (stored there), to the other
node's socket (forwarded over NATS to the owner, docs/scale-out.md "A node's socket in a
cluster"), and from a gateway straight over NATS. Then the same in async mode through the
two sockets (the forwarding node answers once the server has the message). Prints
milliseconds per request (p50, p99); asserts nothing.

    .venv/bin/python bench/socket_forward.py [--requests 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster import need_nats, pct, rows, tenant_of, texts, two_sealed_nodes  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.cluster.client import NatsClient  # noqa: E402


def timed(ways: dict[str, Any], n: int, pool: list[str], tenant: str,
          mode: str) -> dict[str, list[float]]:
    """Milliseconds per request, each way in turn (so load drifts alike for all)."""
    out: dict[str, list[float]] = {way: [] for way in ways}
    for i, r in enumerate(rows(f"fwd-{mode}", n * len(ways), 1, pool)):
        way = list(ways)[i % len(ways)]
        r.update(tenant=tenant, mode=mode)
        t0 = time.perf_counter()
        reply = ways[way](r)
        out[way].append((time.perf_counter() - t0) * 1000)
        assert reply.get("ok"), reply
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100, help="requests per way")
    args = ap.parse_args()
    need_nats("socket_forward.py")
    pool = texts()
    tenant = tenant_of(second=True)
    with tempfile.TemporaryDirectory() as td, two_sealed_nodes(Path(td)) as (url, keys, nodes):
        (_, other_sock), (_, owner_sock) = nodes
        with Client(owner_sock, timeout=60) as owner, \
                Client(other_sock, timeout=60) as other, \
                NatsClient(url, timeout=60, bus_keys=keys) as gateway:
            sync = {"owner's socket": owner.request, "other node's socket": other.request,
                    "gateway over NATS": gateway.request}
            timed(sync, 5, pool, tenant, "sync")  # warm: models, connections
            print(f"host: {os.cpu_count()} cores; 2 nodes and nats-server on loopback, "
                  f"payloads sealed; tenant {tenant} on the second node; "
                  f"{args.requests} sequential requests per way")
            for mode, ways in (("sync", sync), ("async", {
                    "owner's socket": owner.request,
                    "other node's socket": other.request})):
                lat = timed(ways, args.requests, pool, tenant, mode)
                for way, v in lat.items():
                    print(f"{mode:<5} via {way:<19}: p50 {pct(v, 50):6.1f} ms, "
                          f"p99 {pct(v, 99):6.1f} ms")
                added = pct(lat["other node's socket"], 50) - pct(lat["owner's socket"], 50)
                print(f"{mode:<5} forwarding adds {added:+.1f} ms at p50")
            stored = owner.request({"v": 1, "op": "stats"})["store"]["records"]
            here = other.request({"v": 1, "op": "stats"})["store"]["records"]
            print(f"records: {stored} on the owner, {here} on the other node")


if __name__ == "__main__":
    main()
