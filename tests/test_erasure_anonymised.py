"""A user erased while the service is idle: its memory forgets them too, without a prompt.

Retention anonymises a shredded bucket a day after its shred (its user and day go). The
running service learnt which users to forget from those buckets' user at its next batch:
when retention had anonymised them first (no prompt came in for a day, e.g. a weekend), it
forgot nobody. The erased user's vectors stayed in its index (`index_sizes` counted them)
and their history in its linker's memory: the next prompt of the same user, new data after
the erasure, was linked into the erased conversation (its thread id, `continuation`).

The real `semtrace serve` (Presidio, llama.cpp, SQLCipher); `erase` and `retention run
--as-of` a day ahead (what the service's own hourly retention does after a day) beside it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_service import Server
from test_spine import run_cli

from appliance.client import Client

TEXT = "My zorblaxian turbine keeps overheating, how do I cool the quillhaven gasket?"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_user_erased_before_an_idle_day_is_not_linked_to_when_they_come_back(
        tmp_path: Path, passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file).start()
    now = datetime.now(UTC).replace(microsecond=0)
    with Client(srv.sock) as c:
        first = c.ingest(tenant="acme", user_id="alice", request_id="a1",
                         ts=_iso(now - timedelta(minutes=10)), text=TEXT)
        assert first["ok"] and first["position"] == "new"
        bob = c.ingest(tenant="acme", user_id="bob", request_id="b1",
                       ts=_iso(now - timedelta(minutes=9)), text="What oil does a lathe need?")
        assert bob["ok"]
    erased = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "ticket 5",
                     *srv.args)
    assert erased.returncode == 0, erased.stderr
    # no prompt for over a day: the service's hourly retention anonymises the shred
    run = run_cli("retention", "run", "--as-of", _iso(now + timedelta(days=1, hours=1)),
                  "--yes-future", "--json", *srv.args, env=srv.env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["buckets_anonymised"] >= 1
    with Client(srv.sock) as c:
        again = c.ingest(tenant="acme", user_id="alice", request_id="a2", text=TEXT)
        assert again["ok"], again
        stats = c.request({"v": 1, "op": "stats"})
    # a new conversation: nothing links it to what was erased
    assert again["position"] == "new" and again["parent_request_id"] is None
    assert again["conversation_id"] != first["conversation_id"]
    shown = run_cli("threads", "show", again["conversation_id"], "--json", *srv.args)
    assert shown.returncode == 0, shown.stderr
    assert [r["request_id"] for r in json.loads(shown.stdout)["records"]] == ["a2"]
    # the index holds bob's prompt and alice's new one, not the erased vector
    assert stats["index_sizes"] == {"acme": 2}
    assert srv.stop() == 0


def test_an_idle_service_forgets_an_erased_users_vectors_without_a_prompt(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Before, the service forgot what `erase` shredded at its next batch only: an idle
    service kept the erased vectors in memory, and its stats and metrics counted them."""
    srv = Server(tmp_path, passphrase_file).start()
    now = datetime.now(UTC).replace(microsecond=0)
    with Client(srv.sock) as c:
        for rid, user in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
            assert c.ingest(tenant="acme", user_id=user, request_id=rid,
                            ts=_iso(now - timedelta(minutes=10)), text=TEXT)["ok"]
        assert c.request({"v": 1, "op": "stats"})["index_sizes"] == {"acme": 3}
    erased = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "ticket 6",
                     *srv.args)
    assert erased.returncode == 0, erased.stderr
    deadline = time.monotonic() + 120  # the service looks every 5 s: far within this
    with Client(srv.sock) as c:
        while True:  # no prompt is sent: nothing but the service's own look forgets them
            sizes = c.request({"v": 1, "op": "stats"})["index_sizes"]
            if sizes == {"acme": 1} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert sizes == {"acme": 1}  # bob's vector only
    assert srv.stop() == 0
