"""The query socket's kept search index (readindex.py) on the real store and model: it
answers as an index built for the query would, takes in new prompts, and never lets a
prompt whose key is destroyed be found, even when the shred stopped before deleting rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conftest import T0, make_prompt

TEXTS = ("How do I reset my VPN password?", "The VPN client crashes on start",
         "Book a table for two tonight", "Which wine goes with lasagna?",
         "My laptop will not connect to the office VPN")


def _ingest(pipeline: Any) -> None:
    prompts = [make_prompt(t, user=u, minutes=10 * i + j, request_id=f"{u}-{i}")
               for j, u in enumerate(("alice", "bob")) for i, t in enumerate(TEXTS)]
    pipeline.process(prompts)


def _reader(runtime: Any) -> Any:
    from appliance.store import Store

    return Store.open(runtime.store.path.parent, runtime.keyring, readonly=True)


def _search(runtime: Any, pipeline: Any, kept: Any, text: str, **kw: Any) -> list[Any]:
    from appliance.reads import run_search

    store = _reader(runtime)
    try:
        return run_search(store, runtime.keyring, runtime.policies, "compliance",
                          pipeline.embedder, text, limit=kw.pop("limit", 10), kept=kept,
                          **{"tenant": "acme", "user": None, "since": None, **kw})
    finally:
        store.close()


def test_kept_index_answers_as_an_index_built_for_the_query(runtime: Any,
                                                             pipeline: Any) -> None:
    from appliance.readindex import ReaderIndex

    _ingest(pipeline)
    kept = ReaderIndex(pipeline.embedder.dims, pipeline.embedder.model_id)
    since = T0 + timedelta(minutes=20)
    for kw in ({}, {"user": "alice"}, {"since": since}, {"user": "bob", "since": since},
               {"tenant": None}, {"limit": 3}):
        built = _search(runtime, pipeline, None, "VPN trouble", **kw)
        assert built, kw
        assert _search(runtime, pipeline, kept, "VPN trouble", **kw) == built, kw
    late = make_prompt("Where is the VPN installer for macOS?", user="bob", minutes=90,
                       request_id="late")
    pipeline.process([late])
    found = _search(runtime, pipeline, kept, "VPN installer for mac")
    assert found[0].text == late.text
    assert found == _search(runtime, pipeline, None, "VPN installer for mac")
    assert kept.sizes() == {"acme": 2 * len(TEXTS) + 1}


def test_no_search_finds_a_prompt_whose_key_is_destroyed_though_its_rows_remain(
        runtime: Any, pipeline: Any) -> None:
    """A shred killed after destroying its key, before deleting rows."""
    from appliance.readindex import ReaderIndex
    from appliance.search import search

    _ingest(pipeline)
    kept = ReaderIndex(pipeline.embedder.dims, pipeline.embedder.model_id)
    alice = runtime.keyring.pseudonym("acme", "alice")
    assert alice in {h.user for h in _search(runtime, pipeline, kept, "VPN password")}
    bucket = runtime.store.db.execute("SELECT DISTINCT bucket_id FROM records WHERE user=?",
                                      (alice,)).fetchone()[0]
    runtime.store.destroy_key(bucket)
    assert runtime.store.db.execute("SELECT count(*) FROM records WHERE user=?",
                                    (alice,)).fetchone()[0] == len(TEXTS)

    # searched before the index is brought up to date: its hits are dropped when fetched
    store = _reader(runtime)
    try:
        stale = search(store, kept.scoped(["acme"], None), pipeline.embedder, "VPN password",
                       tenant="acme", user=None, k=10)
    finally:
        store.close()
    assert stale and alice not in {h.user for h in stale}
    # brought up to date: the key's destruction drops the index; rebuilt without alice
    hits = _search(runtime, pipeline, kept, "VPN password")
    assert hits and alice not in {h.user for h in hits}
    assert kept.sizes() == {"acme": len(TEXTS)}


def test_after_an_erasure_the_kept_index_holds_none_of_the_users_vectors(
        runtime: Any, pipeline: Any) -> None:
    from appliance.audit import AuditLog
    from appliance.erasure import erase_user
    from appliance.readindex import ReaderIndex
    from appliance.retention import Shredder

    _ingest(pipeline)
    kept = ReaderIndex(pipeline.embedder.dims, pipeline.embedder.model_id)
    alice = runtime.keyring.pseudonym("acme", "alice")
    assert alice in {h.user for h in _search(runtime, pipeline, kept, "VPN password")}
    audit = AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                     anchor=runtime.store.keys_db)
    report = erase_user(Shredder(runtime.store, audit), runtime.policies.retention,
                        runtime.keyring, tenant="acme", user_id="alice", reason="GDPR")
    assert report.records == len(TEXTS)
    hits = _search(runtime, pipeline, kept, "VPN password")
    assert hits and alice not in {h.user for h in hits}
    assert kept.sizes() == {"acme": len(TEXTS)}
    late = make_prompt("Where is the VPN installer for macOS?", user="bob", minutes=90,
                       request_id="late")
    pipeline.process([late])
    found = _search(runtime, pipeline, kept, "VPN installer for mac")
    assert found == _search(runtime, pipeline, None, "VPN installer for mac")
    assert found[0].text == late.text and kept.sizes() == {"acme": len(TEXTS) + 1}


def test_exact_search_reads_the_same_vectors_after_adds_in_any_order_and_removals() -> None:
    """Exact searches read kept rows of the stored vectors; they must match a fresh index's
    whatever order keys came in, and after keys went."""
    import numpy as np

    from appliance.index import TenantIndex

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((60, 16)).astype(np.float32)
    steps = [("a", list(range(0, 20)), vecs[0:20]), ("b", list(range(40, 60)), vecs[40:60]),
             ("a", list(range(20, 40)), vecs[20:40]),  # lower keys than the last add
             ("", [7, 45], None),  # removed
             ("b", [7], -vecs[7:8])]  # 7 back, with another vector
    kept = TenantIndex(16)
    for n, (user, ids, added) in enumerate(steps):
        if added is None:
            kept.remove(ids)
        else:
            kept.add(user, ids, added)
        fresh = TenantIndex(16)
        for user2, ids2, added2 in steps[:n + 1]:
            if added2 is None:
                fresh.remove(ids2)
            else:
                fresh.add(user2, ids2, added2)
        for query in (vecs[7], vecs[50], vecs[30]):
            for who in (None, "a", "b"):
                assert kept.search(query, 8, user=who) == fresh.search(query, 8, user=who)
    assert 45 not in {m.record_id for m in kept.search(vecs[45], 8, user=None)}
    assert kept.search(vecs[7], 1, user=None)[0].record_id != 7  # 7's old vector is gone
