"""Crypto-shredding and erasure that hold up: across key rotations, for reused days,
for the vault, for what outlives a shred, and for the audit log's tail (issue 14)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import T0, make_prompt, write_stream
from test_spine import run_cli


def _audit(runtime):  # type: ignore[no-untyped-def]
    from appliance.audit import AuditLog

    return AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                    anchor=runtime.store.keys_db)


def _shredder(runtime, pipeline=None):  # type: ignore[no-untyped-def]
    from appliance.retention import Shredder

    return Shredder(runtime.store, _audit(runtime),
                    index=pipeline.index if pipeline else None,
                    on_user_shredded=pipeline.forget if pipeline else None)


def _secret(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.touch(mode=0o600)
    path.write_text(text + "\n")
    return path


def _init(tmp_path: Path, passphrase_file: Path) -> list[str]:
    args = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *args).returncode == 0
    return args


# ---------------------------------------------------------------- 1. rotation keeps erasure


def test_erase_after_key_rotation_still_finds_and_removes_the_users_records(
        tmp_path: Path, passphrase_file: Path) -> None:
    args = _init(tmp_path, passphrase_file)
    rows = [{"tenant": "acme", "user_id": u, "ts": "2026-03-02T09:00:00Z",
             "text": f"How do I renew the TLS certificate on host {i}?"}
            for i, u in enumerate(["alice", "alice", "bob"])]
    src = write_stream(tmp_path / "in.jsonl", rows)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    before = json.loads(run_cli("threads", "list", "--json", *args).stdout)
    new = _secret(tmp_path, "new-pw", "a brand new passphrase")
    assert run_cli("keys", "rotate", "--new-passphrase-file", str(new), *args).returncode == 0
    new_args = [args[0], args[1], "--passphrase-file", str(new)]

    # linking keeps its history across the rotation: the follow-up joins alice's thread
    follow = write_stream(tmp_path / "more.jsonl", [
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:03:00Z", "request_id": "f-1",
         "text": "And how do I renew the TLS certificate on host 2?"}])
    assert run_cli("replay", str(follow), "--out", str(tmp_path / "o2.jsonl"),
                   *new_args).returncode == 0
    after = json.loads(run_cli("threads", "list", "--json", *new_args).stdout)
    assert {t["thread_id"] for t in after} == {t["thread_id"] for t in before}
    assert sum(t["turns"] for t in after) == 4

    erased = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "GDPR",
                     "--json", *new_args)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["records"] == 3
    left = json.loads(run_cli("search", "TLS certificate renewal", "--json", *new_args).stdout)
    assert len(left) == 1  # only bob's prompt
    text = run_cli("erase", "--tenant", "acme", "--user", "bob", "--reason", "GDPR", *new_args)
    bob = json.loads(run_cli("audit", "log", "--json", "--event", "erase", "--limit", "1",
                             *new_args).stdout)[0]["details"]["user"]
    # which tenant, as the other outcomes say it (a pseudonym is per tenant), and the proof
    assert text.returncode == 0 and text.stdout == (
        f"Erased 1 record in 1 bucket of {bob} in acme; the erasure is in the audit "
        "log.\n")


def test_legal_hold_still_matches_after_key_rotation(tmp_path: Path,
                                                     passphrase_file: Path) -> None:
    from appliance.config import LegalHold
    from appliance.keys import read_passphrase_file
    from appliance.retention import Shredder, run_retention
    from appliance.runtime import open_runtime

    args = _init(tmp_path, passphrase_file)
    rows = [{"tenant": "acme", "user_id": "held-user", "ts": "2026-03-02T09:00:00Z",
             "text": "A question about the supplier contract"}]
    src = write_stream(tmp_path / "in.jsonl", rows)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    new = _secret(tmp_path, "new-pw", "a brand new passphrase")
    assert run_cli("keys", "rotate", "--new-passphrase-file", str(new), *args).returncode == 0

    rt = open_runtime(tmp_path / "data", read_passphrase_file(new))
    try:
        settings = rt.policies.retention.model_copy(update={"legal_holds": [
            LegalHold(tenant="acme", user_id="held-user", reason="case 12")]})
        from appliance.audit import AuditLog

        audit = AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db)
        report = run_retention(Shredder(rt.store, audit), settings, rt.keyring,
                               now=T0 + timedelta(days=45))
        assert report.shredded == 0 and len(report.held) == 1
        assert len(rt.store.records("1=1", ())) == 1
    finally:
        rt.close()


def test_erase_refuses_success_when_records_predate_a_pseudonym_changing_rotation(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A store rotated by an older version: its earlier pseudonyms are unreachable."""
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _init(tmp_path, passphrase_file)
    rows = [{"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
             "text": "Where is the VPN configuration guide?"}]
    src = write_stream(tmp_path / "in.jsonl", rows)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    # What an older version's rotation left: the records under a pseudonym that no key
    # derives any more, a key_rotation entry, and the migration not yet applied.
    rt = open_runtime(tmp_path / "data", read_passphrase_file(passphrase_file))
    db = rt.store.db
    for table in ("records", "threads", "buckets", "turn_digests"):
        db.execute(f"UPDATE {table} SET user = 'u_0123456789abcdef0123'")
    _audit(rt).append("key_rotation", {"deks_rewrapped": 1, "credential": "passphrase"})
    db.execute("DELETE FROM _migrations WHERE name = 'm010_pseudonym_epochs'")
    rt.close()

    erased = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "GDPR", *args)
    assert erased.returncode == 7
    assert "Erased 0 records" in erased.stdout and "NOT complete" in erased.stderr
    assert "before a key rotation" in erased.stderr
    as_json = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "GDPR",
                      "--json", *args)
    out = json.loads(as_json.stdout)
    assert as_json.returncode == 7 and out["complete"] is False
    assert out["unattributable_buckets"] == 1


# ---------------------------------------------------------------- 3. and 4. bucket ids


def test_bucket_ids_are_never_reused_after_the_newest_bucket_is_shredded(
        pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.report import build_report
    from appliance.store import day_of

    first = make_prompt("Compare two mortgage offers", user="carol")
    pipeline.process([first])
    store = runtime.store
    carol = runtime.keyring.pseudonym("acme", "carol")
    shredded = store.shred("acme", carol, day_of(first.ts), reason="test").bucket_id
    out = pipeline.process([make_prompt("Best hiking boots for winter?", user="dave",
                                        minutes=5)])
    rec = store.records("r.id = ?", (out[0].record_id,))[0]
    assert rec.text == "Best hiking boots for winter?"
    new_bucket = store.db.execute("SELECT bucket_id FROM records WHERE id=?",
                                  (out[0].record_id,)).fetchone()[0]
    assert new_bucket > shredded
    assert not store.key_exists(shredded)  # no stray key under the destroyed bucket's id
    report = build_report(store, _audit(runtime), runtime.policies.retention)
    assert report["self_check"]["passed"] is True


def test_a_user_erased_today_can_be_written_to_again_today(pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.erasure import erase_user

    now = datetime.now(UTC)
    pipeline.process([replace(make_prompt("Draft a complaint letter", user="erin"),
                              ts=now - timedelta(seconds=1))])
    report = erase_user(_shredder(runtime, pipeline), runtime.policies.retention,
                        runtime.keyring, tenant="acme", user_id="erin", reason="GDPR")
    assert report.records == 1
    # sent after the erasure (one sent before it would be refused: test_erasure_inflight.py)
    later = pipeline.process([replace(make_prompt("How do I plant tulip bulbs?", user="erin",
                                                  minutes=30), ts=datetime.now(UTC))])
    recs = runtime.store.records("r.id = ?", (later[0].record_id,))
    assert recs[0].text == "How do I plant tulip bulbs?"
    erin = runtime.keyring.pseudonym("acme", "erin")
    days = runtime.store.db.execute(
        "SELECT count(*), sum(destroyed_at IS NULL) FROM buckets WHERE user=?",
        (erin,)).fetchone()
    assert days == (2, 1)  # the erased bucket (closed) and today's fresh one
    assert report.complete


def test_erasure_drops_the_users_vectors_and_text_facts_from_the_linkers_memory(
        pipeline, runtime, embedder) -> None:  # type: ignore[no-untyped-def]
    """Erasure by the CLI (another process): the service's next batch finds the shred and
    its linker holds no vector, thread fact or text fact of the erased user's records;
    another user's links are exactly what a fresh linker decides."""
    from appliance.cues import keywords
    from appliance.erasure import erase_user
    from appliance.link import LinkInput, make_linker
    from appliance.link.cache import text_facts

    alice = ["How do I renew the TLS certificate on the mail server?",
             "And what about the certificate on the web server?",
             "Does it need a restart afterwards?"]
    bob = ["Suggest a vegetarian lasagne recipe", "Can I make it without ricotta?",
           "How long does it keep in the fridge?"]
    for i, (a, b) in enumerate(zip(alice, bob, strict=True)):  # each in its chat window
        pipeline.process([make_prompt(a, user="alice", minutes=i, session_id="w-alice"),
                          make_prompt(b, user="bob", minutes=i + 0.5, session_id="w-bob")])
    pseudo = {u: runtime.keyring.pseudonym("acme", u) for u in ("alice", "bob")}
    bobs_thread = {r.thread_id for r in runtime.store.records("r.user = ?", (pseudo["bob"],))}
    assert len(bobs_thread) == 1  # bob's window is one conversation
    texts = [r.text for r in runtime.store.records("r.user = ?", (pseudo["alice"],))]
    ids = sorted(runtime.store.record_ids_of("acme", pseudo["alice"]))
    cache = pipeline.linker.cache
    assert any(rid in cache for rid in ids)  # held before the erasure

    def bobs_next():  # type: ignore[no-untyped-def]
        text = "Could I freeze it instead?"
        cands = runtime.store.candidates("acme", pseudo["bob"], 0.0,
                                         model_id=embedder.model_id)
        q = LinkInput(ts=T0 + timedelta(minutes=5), vector=embedder.embed([text])[0][0],
                      text=text)
        return q, cands

    q, cands = bobs_next()
    before = pipeline.linker(q, cands)
    Shredder = type(_shredder(runtime))  # the CLI's: no hook into the service's memory
    report = erase_user(Shredder(runtime.store, _audit(runtime)), runtime.policies.retention,
                        runtime.keyring, tenant="acme", user_id="alice", reason="GDPR")
    assert report.records == 3
    out = pipeline.process([make_prompt("Could I freeze it instead?", user="bob", minutes=5)])

    assert not [rid for rid in ids if rid in cache]
    for text in texts:
        seen = keywords.cache_info().misses, text_facts.cache_info().misses
        keywords(text)
        text_facts(text)
        assert (keywords.cache_info().misses, text_facts.cache_info().misses) == (
            seen[0] + 1, seen[1] + 1)  # computed afresh: nothing of it was held
    assert {out[0].thread_id} == bobs_thread
    assert pipeline.linker(q, cands) == before == make_linker(runtime.policies.correlation)(
        q, cands)


def test_erasure_overwrites_the_users_vectors_in_the_services_memory(
        pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    """usearch keeps a removed vector's bytes in its slot until an add reuses the slot.
    After an erasure by the CLI (another process) and the service's next batch, not one of
    the erased user's stored vectors is left in the in-memory index (its whole image, as
    usearch would write it), while the other user's are, and still found by search."""
    import numpy as np

    from appliance.erasure import erase_user

    for i, (a, b) in enumerate([("How do I renew the TLS certificate on the mail server?",
                                 "Suggest a vegetarian lasagne recipe"),
                                ("And what about the certificate on the web server?",
                                 "Can I make it without ricotta?"),
                                ("Does it need a restart afterwards?",
                                 "How long does it keep in the fridge?")]):
        pipeline.process([make_prompt(a, user="alice", minutes=i),
                          make_prompt(b, user="bob", minutes=i + 0.5)])
    ix = pipeline.index.tenant("acme")
    pseudo = {u: runtime.keyring.pseudonym("acme", u) for u in ("alice", "bob")}

    def held(user: str) -> list[bytes]:  # each vector's bytes exactly as the index keeps them
        keys = np.asarray(sorted(runtime.store.record_ids_of("acme", pseudo[user])),
                          dtype=np.uint64)
        return [np.asarray(v).tobytes() for v in ix._index.get(keys)]

    alices, bobs = held("alice"), held("bob")
    image = bytes(ix._index.save())
    assert len(alices) == 3 and all(v in image for v in alices + bobs)

    Shredder = type(_shredder(runtime))  # the CLI's: no hook into the service's memory
    erase_user(Shredder(runtime.store, _audit(runtime)), runtime.policies.retention,
               runtime.keyring, tenant="acme", user_id="alice", reason="GDPR")
    pipeline.process([make_prompt("Could I freeze it instead?", user="bob", minutes=5)])

    image = bytes(ix._index.save())
    assert [v in image for v in alices] == [False] * 3
    assert all(v in image for v in bobs)
    bob_ids = runtime.store.record_ids_of("acme", pseudo["bob"])
    assert len(bob_ids) == 4 == len(ix) and ix.user_keys(pseudo["bob"]) == bob_ids
    first = min(bob_ids)
    vec = np.asarray(ix._index.get(np.uint64(first)), dtype=np.float32)
    assert ix.search(vec, 1, user=None)[0].record_id == first


# ---------------------------------------------------------------- 5. vault keys


def test_vault_originals_are_unreadable_from_a_backup_after_vault_retention(
        pipeline, runtime, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from appliance.keys import (
        create_reveal_key,
        read_passphrase_file,
        reveal_sealer,
        unlock_reveal_key,
    )
    from appliance.retention import run_retention
    from appliance.store import DB_FILE, KEYS_FILE, Store

    officer = read_passphrase_file(_secret(tmp_path, "officer", "compliance officer secret"))
    create_reveal_key(data_dir, officer, runtime.keyring)
    runtime.store.sealer = reveal_sealer(data_dir, runtime.keyring)
    out = pipeline.process([make_prompt("Email me at vera.vaultcase@example.com please",
                                        user="vera")])
    rid = out[0].record_id
    opener = unlock_reveal_key(data_dir, officer)
    assert ("vera.vaultcase@example.com" in
            [v for _, v in runtime.store.reveal(rid, opener) or []])
    runtime.store.checkpoint()
    backup = tmp_path / "backup"
    shutil.copytree(data_dir, backup)

    report = run_retention(_shredder(runtime, pipeline), runtime.policies.retention,
                           runtime.keyring, now=T0 + timedelta(days=9))
    assert report.vault_cleared == 1 and report.records == 0  # prompts stay 30 days
    assert runtime.store.records("r.id = ?", (rid,))[0].text is not None
    assert runtime.store.reveal(rid, opener) is None

    # The backup still holds the vault row, but its key is gone from the live key store.
    shutil.copy(data_dir / KEYS_FILE, backup / KEYS_FILE)
    for suffix in ("-wal", "-shm"):
        (backup / (KEYS_FILE + suffix)).unlink(missing_ok=True)
    copy = Store.open(backup, runtime.keyring, readonly=True)
    try:
        assert copy.db.execute("SELECT count(*) FROM vault").fetchone()[0] == 1
        assert copy.reveal(rid, opener) is None
    finally:
        copy.close()
    assert (backup / DB_FILE).exists()


# ---------------------------------------------------------------- 6. what outlives a shred


def test_shredded_buckets_lose_their_calendar_and_go_after_aggregates_days(
        pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.report import build_report
    from appliance.retention import run_retention

    pipeline.process([make_prompt("Plan a birthday party", user="gus"),
                      make_prompt("Ideas for a cake?", user="gus", minutes=60 * 24)])
    settings = runtime.policies.retention
    shredder = _shredder(runtime, pipeline)
    first = run_retention(shredder, settings, runtime.keyring, now=T0 + timedelta(days=45))
    assert first.shredded == 2
    gus = runtime.keyring.pseudonym("acme", "gus")
    shredded = [e.details for e in _audit(runtime).entries(events=("shred",))]
    assert shredded and all("user" not in d for d in shredded)
    assert all(gus not in json.dumps(e.details) for e in _audit(runtime).entries()
               if e.event != "erase")
    held = {h["class"]: h for h in build_report(runtime.store, _audit(runtime), settings,
                                                 now=T0 + timedelta(days=45))["holdings"]}
    assert held["shredded"]["limit_days"] == settings.default.aggregates_days
    assert held["shredded"]["within_policy"] is True
    # A day later the shredded buckets name neither user nor day...
    now = datetime.now(UTC).timestamp()
    runtime.store.db.execute("UPDATE buckets SET destroyed_at = ?", (now - 2 * 86400,))
    run_retention(shredder, settings, runtime.keyring, now=datetime.now(UTC))
    rows = runtime.store.db.execute("SELECT user, day FROM buckets").fetchall()
    assert rows == [(None, None), (None, None)]
    # ... and after aggregates_days they are gone, from both files.
    days = settings.default.aggregates_days
    report = run_retention(shredder, settings, runtime.keyring,
                           now=datetime.now(UTC) + timedelta(days=days))
    assert report.buckets_forgotten == 2
    assert runtime.store.db.execute("SELECT count(*) FROM buckets").fetchone()[0] == 0
    assert runtime.store.keys_db.execute("SELECT count(*) FROM destroyed").fetchone()[0] == 0


# ---------------------------------------------------------------- 7. audit tail


def test_cutting_the_tail_off_the_audit_log_is_detected(tmp_path: Path,
                                                        passphrase_file: Path) -> None:
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _init(tmp_path, passphrase_file)
    rt = open_runtime(tmp_path / "data", read_passphrase_file(passphrase_file))
    log = _audit(rt)
    for i in range(5):
        log.append("shred", {"bucket": i, "records": i})
    rt.close()
    assert run_cli("audit", "verify", *args).returncode == 0
    rt = open_runtime(tmp_path / "data", read_passphrase_file(passphrase_file))
    top = rt.store.db.execute("SELECT max(seq) FROM audit").fetchone()[0]
    # Every entry is signed, so dropping the last two with their checkpoints leaves a
    # chain that is intact in itself.
    rt.store.db.execute("DELETE FROM audit WHERE seq > ?", (top - 2,))
    rt.store.db.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (top - 2,))
    rt.close()
    cut = run_cli("audit", "verify", *args)
    assert cut.returncode == 6 and "cut off" in cut.stdout


@pytest.mark.parametrize("cut,words", [
    (2, "the log ends at entry"),  # into a batch, whose last entry alone is signed
    (None, "the log is empty but had reached entry")])
def test_a_cut_off_tail_is_named_as_such_wherever_the_cut_falls(
        tmp_path: Path, passphrase_file: Path, cut: int | None, words: str) -> None:
    """What the officer reads is what happened: entries were cut off the end, not 'entries
    after N are not signed' (as if unsigned entries had been added)."""
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _init(tmp_path, passphrase_file)
    rt = open_runtime(tmp_path / "data", read_passphrase_file(passphrase_file))
    _audit(rt).append_many([("shred", {"bucket": i, "records": 1}) for i in range(4)])
    top = rt.store.db.execute("SELECT max(seq) FROM audit").fetchone()[0]
    keep = 0 if cut is None else top - cut
    with rt.store.db:
        rt.store.db.execute("DELETE FROM audit WHERE seq > ?", (keep,))
        rt.store.db.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (keep,))
    rt.close()
    out = run_cli("audit", "verify", *args)
    assert out.returncode == 6 and words in out.stdout and "cut off" in out.stdout, out.stdout
    assert json.loads(run_cli("audit", "verify", "--json", *args).stdout)["first_bad_seq"] == top


# ---------------------------------------------------------------- 14. policy keys


@pytest.mark.parametrize("section,key,value", [
    ("retention", "default.vectors_days", "10"), ("retention", "default.threads_days", "10"),
    ("retention", "checkpoint_every", "64"), ("correlation", "sample_rate", "0.5")])
def test_policy_keys_that_did_nothing_are_refused_by_name(
        tmp_path: Path, section: str, key: str, value: str) -> None:
    from appliance.config import ConfigError, load_policies, policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    text = (pdir / f"{section}.toml").read_text()
    table, _, name = key.rpartition(".")
    if table:
        text = text.replace(f"[{table}]\n", f"[{table}]\n{name} = {value}\n")
    else:
        text = f"{name} = {value}\n" + text
    (pdir / f"{section}.toml").write_text(text)
    with pytest.raises(ConfigError, match=f"{name}' was removed"):
        load_policies(pdir)


def test_the_signed_report_states_only_enforced_policy_keys(runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.config import policy_dir
    from appliance.report import build_report

    body = build_report(runtime.store, _audit(runtime), runtime.policies.retention)
    text = json.dumps(body) + "".join(p.read_text() for p in policy_dir().glob("*.toml"))
    for key in ("sample_rate", "checkpoint_every", "vectors_days", "threads_days"):
        assert f'"{key}"' not in text and f"\n{key} =" not in text
    assert body["policy"]["default"]["aggregates_days"] > 0
    # what outlives a shred is stated, with its limit
    assert any("aggregates_days" in line for line in body["kept_after_shredding"])
