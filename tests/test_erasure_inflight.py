"""An erasure covers the prompts that were on their way: queued in the service while
`semtrace erase` ran, they are not stored (reply `erased`), nothing of the user is in the
decrypted tables afterwards, and a prompt the user sends after the erasure is stored (an
erasure is not a ban). The cluster's side (a node stopped while erase ran, catching up on
its JetStream backlog): test_erasure_inflight_cluster.py."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import make_prompt, running_service
from test_spine import run_cli

from appliance.client import Client

ALICE = ["Please send the lease for flat 4 to the landlord today.",
         "Which clauses in the lease cover the deposit?",
         "Remind me what the notice period for the flat is.",
         "Can the landlord keep the deposit for repainting?"]


def users_records(data_dir: Path, cred: Any, tenant: str,
                  user_id: str) -> tuple[int, list[str]]:
    """(records and history digests of the user, every decrypted text of the store), read
    afresh with the master credential `cred`."""
    from appliance.runtime import open_runtime

    rt = open_runtime(data_dir, cred)
    try:
        user = rt.keyring.pseudonym(tenant, user_id)
        texts = [r.text or "" for r in rt.store.records("1 = 1", ())]
        mine = rt.store.records("r.tenant = ? AND r.user = ?", (tenant, user))
        digests = rt.store.db.execute("SELECT count(*) FROM turn_digests WHERE tenant = ? "
                                      "AND user = ?", (tenant, user)).fetchone()[0]
        return len(mine) + int(digests), texts
    finally:
        rt.close()


def test_prompts_queued_while_erase_runs_are_not_stored_and_later_ones_are(
        pipeline: Any, data_dir: Path, passphrase_file: Path, tmp_path: Path) -> None:
    from appliance.keys import read_passphrase_file

    args = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc, Client(sock, timeout=600) as c:
        first = c.ingest(tenant="acme", user_id="alice", text=ALICE[0], request_id="a-0")
        assert first["ok"] and not first["duplicate"]
        assert c.ingest(tenant="acme", user_id="bob", text="Summarise the board minutes.",
                        request_id="b-0")["ok"]
        gate = threading.Event()
        svc._pool.submit(gate.wait)  # the worker is busy: what arrives now waits in the queue
        queued = [c.ingest(tenant="acme", user_id="alice", text=t, request_id=f"a-{i}",
                           mode="async") for i, t in enumerate(ALICE[1:3], 1)]
        assert all(r["ok"] and r["queued"] for r in queued)
        waiting: dict[str, Any] = {}

        def sync_one() -> None:  # a gateway waiting for its answer meanwhile
            with Client(tmp_path / "s.sock", timeout=600) as c2:
                waiting["reply"] = c2.ingest(tenant="acme", user_id="alice", text=ALICE[3],
                                             request_id="a-3")

        t = threading.Thread(target=sync_one)
        t.start()
        try:
            deadline = time.monotonic() + 60
            while len(svc._pending) < 3:  # queued ingests, none written yet
                assert time.monotonic() < deadline, "the prompts did not queue"
                time.sleep(0.02)
            erased = run_cli("erase", *args, "--tenant", "acme", "--user", "alice",
                             "--reason", "DSAR 2026-7", "--json")
            assert len(svc._pending) == 3  # still queued when the erasure completed
        finally:
            gate.set()
        t.join(600)
        assert erased.returncode == 0, erased.stderr
        assert json.loads(erased.stdout)["records"] == 1  # the one stored before

        reply = waiting["reply"]
        assert reply["ok"] is False and reply["error"]["code"] == "erased"
        assert "erased" in reply["error"]["message"] and reply["request_id"] == "a-3"
        assert c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": "a-1"}
                         )["error"]["code"] == "not_found"
        stats = c.request({"v": 1, "op": "stats"})
        assert stats["counters"]["erased"] == 3
        n, texts = users_records(data_dir, read_passphrase_file(passphrase_file), "acme",
                             "alice")
        assert n == 0
        assert not [t for t in texts if "lease" in t or "deposit" in t or "flat" in t]
        assert any("board minutes" in t for t in texts)  # bob is untouched

        # after the erasure: new data, stored as usual
        after = c.ingest(tenant="acme", user_id="alice", text="How do I plant tulip bulbs?",
                         request_id="a-after")
        assert after["ok"] and not after["duplicate"]
    n, texts = users_records(data_dir, read_passphrase_file(passphrase_file), "acme",
                             "alice")
    assert n == 2 and "How do I plant tulip bulbs?" in texts  # the record and its digest
    listed = json.loads(run_cli("threads", "list", "--json", *args).stdout)
    assert sum(t["turns"] for t in listed) == 2  # bob's and alice's new one


def test_a_replayed_prompt_from_before_the_erasure_is_not_stored(
        pipeline: Any, runtime: Any) -> None:
    """The pipeline itself (replay shares it): a prompt dated before the erasure's end is
    refused before it is redacted or embedded; one dated after is stored."""
    from appliance.audit import AuditLog
    from appliance.erasure import erase_user
    from appliance.records import Erased, Outcome
    from appliance.retention import Shredder

    now = datetime.now(UTC)
    pipeline.process([make_prompt(ALICE[0], user="erin", request_id="e-0")])
    audit = AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                     anchor=runtime.store.keys_db)
    report = erase_user(Shredder(runtime.store, audit), runtime.policies.retention,
                        runtime.keyring, tenant="acme", user_id="erin", reason="DSAR 9")
    assert report.records == 1
    late = replace(make_prompt(ALICE[1], user="erin", request_id="e-1"),
                   ts=now - timedelta(seconds=5))
    newer = replace(late, request_id="e-2", ts=datetime.now(UTC) + timedelta(seconds=1))
    out = pipeline.process([late, newer])
    assert isinstance(out[0], Erased) and out[0].request_id == "e-1"
    assert isinstance(out[1], Outcome)
    erin = runtime.keyring.pseudonym("acme", "erin")
    assert [r.request_id for r in runtime.store.records("r.user = ?", (erin,))] == ["e-2"]
    assert pipeline.index.user_keys("acme", erin) == {out[1].record_id}


def test_an_erasure_landing_between_the_check_and_the_commit_still_wins(
        pipeline: Any, runtime: Any, monkeypatch: Any) -> None:
    """The check before redaction misses an erasure that starts right after it: the write
    transaction checks again, nothing of the batch is written, and the batch is run again,
    so the erased user's prompt is refused and the others are stored once."""
    from appliance.records import Erased, Outcome

    erin = runtime.keyring.pseudonym("acme", "erin")
    check = pipeline._erased
    calls = {"n": 0}

    def late(prompt: Any) -> Any:  # the erasure begins just after the first check
        calls["n"] += 1
        if calls["n"] == 2:
            runtime.store.begin_erasure("acme", erin, datetime.now(UTC).timestamp())
        return None if calls["n"] <= 2 else check(prompt)

    monkeypatch.setattr(pipeline, "_erased", late)
    now = datetime.now(UTC)
    out = pipeline.process([replace(make_prompt(ALICE[0], user="bob", request_id="b-1"), ts=now),
                            replace(make_prompt(ALICE[1], user="erin", request_id="e-1"),
                                    ts=now)])
    assert isinstance(out[0], Outcome) and isinstance(out[1], Erased)
    assert runtime.store.records("r.user = ?", (erin,)) == []
    bob = runtime.keyring.pseudonym("acme", "bob")
    assert [r.request_id for r in runtime.store.records("r.user = ?", (bob,))] == ["b-1"]


def test_erase_all_tenants_leaves_a_tombstone_where_a_prompt_is_on_its_way_and_nothing_stored(
        pipeline: Any, data_dir: Path, passphrase_file: Path, tmp_path: Path) -> None:
    """alice has data in acme only; globex (named in access.toml, nothing stored yet) has a
    prompt of hers queued in the service while `erase --all-tenants` runs: globex gets a
    tombstone with 0 records, the prompt is answered 'erased' and not stored."""
    import shutil

    from appliance.config import POLICY_DIR_ENV, policy_dir
    from appliance.keys import read_passphrase_file

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    with (pdir / "access.toml").open("a") as fh:
        fh.write('\n[roles.analyst-globex]\npermissions = ["read"]\ntenants = ["globex"]\n')
    args = ["--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc, Client(sock, timeout=600) as c:
        assert c.ingest(tenant="acme", user_id="alice", text=ALICE[0], request_id="a-0")["ok"]
        gate = threading.Event()
        svc._pool.submit(gate.wait)  # the worker is busy: what arrives now waits in the queue
        waiting: dict[str, Any] = {}

        def sync_one() -> None:  # a gateway waiting for its answer meanwhile
            with Client(tmp_path / "s.sock", timeout=600) as c2:
                waiting["reply"] = c2.ingest(tenant="globex", user_id="alice",
                                             text=ALICE[1], request_id="g-1")

        t = threading.Thread(target=sync_one)
        t.start()
        try:
            deadline = time.monotonic() + 60
            while len(svc._pending) < 1:
                assert time.monotonic() < deadline, "the prompt did not queue"
                time.sleep(0.02)
            erased = run_cli("erase", *args, "--all-tenants", "--user", "alice",
                             "--reason", "DSAR 2026-8", "--json",
                             env={POLICY_DIR_ENV: str(pdir)})
            assert len(svc._pending) == 1  # still queued when the erasure completed
        finally:
            gate.set()
        t.join(600)
        assert erased.returncode == 0, erased.stderr
        reply = waiting["reply"]
        assert reply["ok"] is False and reply["error"]["code"] == "erased", reply
        cred = read_passphrase_file(passphrase_file)
        assert users_records(data_dir, cred, "globex", "alice")[0] == 0
        done = json.loads(erased.stdout)
        assert {(r["tenant"], r["records"], r["tombstone"]) for r in done["tenants"]} == {
            ("acme", 1, True), ("globex", 0, True)}
        assert done["tombstone_only"] == ["globex"]
        text = run_cli("erase", *args, "--all-tenants", "--user", "alice", "--reason",
                       "DSAR 2026-8", env={POLICY_DIR_ENV: str(pdir)})
        assert "Tombstone with 0 records in 2 tenants: acme, globex" in text.stdout
    for tenant in ("acme", "globex"):
        n, texts = users_records(data_dir, cred, tenant, "alice")
        assert n == 0, tenant
    assert not [t for t in texts if "lease" in t or "clauses" in t]
