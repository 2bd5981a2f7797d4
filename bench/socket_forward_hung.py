"""How long a hung owner holds the replies of a forwarding node's pipelined connection.

Two `semtrace serve --nats` nodes and one nats-server on this host's loopback, sealed with
a bus key, the default cluster.toml (`owner_ttl_s` 15 s). On one connection to the first
node's socket, pipelined: a sync prompt of a tenant of the second node (forwarded over NATS
to it), then a sync and an async prompt of the first node's own tenant. Once with the
second node running, then again and again after `kill -STOP` of it, until its claim has
expired (docs/scale-out.md, "A node's socket in a cluster"); a lookup on another connection
says when the own sync prompt was committed. Prints seconds per reply; asserts nothing.

    .venv/bin/python bench/socket_forward_hung.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster import need_nats, tenant_of, two_sealed_nodes  # noqa: E402

from appliance.client import Client  # noqa: E402


def ingest(who: str, rid: str, mode: str = "sync") -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": who, "request_id": rid, "user_id": "ana",
            "text": f"Please summarise the notes of meeting {rid}.", "mode": mode,
            "ts": datetime.now(UTC).isoformat()}


def pipelined(sock: Path, objs: list[dict[str, Any]]) -> list[str]:
    """Each reply as 'seconds after sending: request id code'."""
    out = []
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(str(sock))
        t0 = time.monotonic()
        s.sendall(b"".join(json.dumps(o).encode() + b"\n" for o in objs))
        replies = s.makefile("rb")
        for _ in objs:
            r = json.loads(replies.readline())
            code = "ok" if r.get("ok") else r["error"]["code"]
            out.append(f"{time.monotonic() - t0:5.2f} s {r['request_id']} {code}")
    return out


def committed_after(sock: Path, who: str, rid: str, found: dict[str, float]) -> None:
    """Seconds until a lookup on another connection finds `rid` (into `found`)."""
    t0 = time.monotonic()
    with Client(sock, timeout=60) as c:
        while time.monotonic() - t0 < 30:
            if c.request({"v": 1, "op": "lookup", "tenant": who, "request_id": rid}).get("ok"):
                found[rid] = time.monotonic() - t0
                return
            time.sleep(0.02)


def trio(sock: Path, theirs: str, mine: str, tag: str) -> None:
    found: dict[str, float] = {}
    look = threading.Thread(target=committed_after, args=(sock, mine, f"{tag}-own", found))
    look.start()
    said = pipelined(sock, [ingest(theirs, f"{tag}-fwd"), ingest(mine, f"{tag}-own"),
                            ingest(mine, f"{tag}-own-async", "async")])
    look.join()
    print(f"  {tag}: " + "; ".join(said)
          + f" (own sync prompt committed after {found.get(f'{tag}-own', float('nan')):.2f} s)")


def main() -> None:
    need_nats("socket_forward_hung.py")
    theirs, mine = tenant_of(second=True), tenant_of(second=False)
    with tempfile.TemporaryDirectory() as td, two_sealed_nodes(Path(td)) as (_, _, nodes):
        (_, sock), (owner, owner_sock) = nodes
        pipelined(sock, [ingest(theirs, "warm"), ingest(mine, "warm")])
        print(f"host: {os.cpu_count()} cores; forwarded sync, own sync, own async, "
              "pipelined on one connection")
        print("owner running:")
        for i in range(3):
            trio(sock, theirs, mine, f"up{i}")
        os.kill(owner.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        print("owner stopped (kill -STOP):")
        try:
            for i in range(12):
                print(f"  at {time.monotonic() - stopped:4.1f} s after the stop:")
                t0 = time.monotonic()
                trio(sock, theirs, mine, f"hung{i}")
                if time.monotonic() - t0 < 1:
                    break
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        with Client(owner_sock, timeout=60) as c:
            time.sleep(5)  # the owner takes its backlog
            held = c.request({"v": 1, "op": "lookup", "tenant": theirs,
                              "request_id": "hung0-fwd"})
        print(f"after kill -CONT the owner has hung0-fwd: {bool(held.get('ok'))}")


if __name__ == "__main__":
    main()
