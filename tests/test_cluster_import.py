"""`cluster import` interrupted by SIGKILL (appliance/failpoints.py), then run again.

Node a's tenants (replayed through the real pipeline: Presidio, llama.cpp, SQLCipher)
are exported and imported into node b, which is killed at a chosen step. Afterwards
b's key store and tables must agree: every data key has its bucket (no orphan copy
of a moved key, which retention and erasure would never destroy), no record twice,
and every moved record decrypts on b as it did on a.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_spine import run_cli

pytestmark = pytest.mark.slow
DAY = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
TURNS = ["How do I bake sourdough bread at home?", "How long should the dough rise?",
         "What is the capital of Australia?", "Which season is best to visit it?"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Node a with two tenants' records (initialised with the cluster key file), and the
    texts of its records as a decrypts them."""
    tmp = tmp_path_factory.mktemp("move")
    key = tmp / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp / "a"), "--new-key-file",
                   str(key)).returncode == 0
    rows = [{"tenant": tenant, "user_id": f"{tenant}-{u}", "request_id": f"{tenant}-{u}-{i}",
             "ts": f"{DAY}T09:{10 * u + i:02d}:00Z", "text": text}
            for tenant in ("acme", "globex") for u in range(2) for i, text in enumerate(TURNS)]
    stream = tmp / "stream.jsonl"
    stream.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run_cli("replay", str(stream), "--out", str(tmp / "out.jsonl"), "--data-dir",
                str(tmp / "a"), "--key-file", str(key))
    assert r.returncode == 0, r.stderr
    deks, buckets = _keys_and_buckets(tmp / "a", key)
    assert deks == buckets
    import shutil

    shutil.copytree(tmp / "a", tmp / "a-never-exported")  # as it is before any export
    return {"tmp": tmp, "key": key, "texts": _texts(tmp / "a", key), "rows": len(rows),
            "buckets": len(buckets)}


def _open(data: Path, key: Path) -> Any:
    """The data dir opened for writing, as `serve` opens it at start."""
    from appliance.keys.credentials import read_key_file
    from appliance.runtime import open_runtime

    return open_runtime(data, read_key_file(key))


def _texts(data: Path, key: Path) -> dict[int, str | None]:
    rt = _open(data, key)
    try:
        return {rid: rt.store.text(rid, bid, blob) for rid, bid, blob in rt.store.db.execute(
            "SELECT id, bucket_id, text_ct FROM records")}
    finally:
        rt.close()


def _keys_and_buckets(data: Path, key: Path) -> tuple[list[int], list[int]]:
    rt = _open(data, key)
    try:
        deks = [r[0] for r in rt.store.keys_db.execute("SELECT bucket_id FROM deks")]
        buckets = [r[0] for r in rt.store.db.execute("SELECT id FROM buckets")]
        return sorted(deks), sorted(buckets)
    finally:
        rt.close()


def _export(ex: dict[str, Any], name: str) -> Path:
    out = ex["tmp"] / f"{name}.semtrace"
    r = run_cli("cluster", "export", "--data-dir", str(ex["tmp"] / "a"), "--key-file",
                str(ex["key"]), "--partitions", "0-15", "--of", "16", "--out", str(out))
    assert r.returncode == 0, r.stderr
    # the next step as printed runs as is (before: without --yes, which forget requires)
    assert r.stdout.strip().endswith("then run `semtrace cluster forget --partitions 0-15 "
                                     "--yes` here.")
    return out


def _new_node(ex: dict[str, Any], name: str) -> Path:
    data = ex["tmp"] / name
    assert run_cli("init", "--data-dir", str(data), "--key-file", str(ex["key"])
                   ).returncode == 0
    return data


def _import(ex: dict[str, Any], data: Path, export: Path, *extra: str,
            failpoint: str | None = None) -> Any:
    env = {"SEMTRACE_FAILPOINT": failpoint} if failpoint else {}
    return run_cli("cluster", "import", "--data-dir", str(data), "--key-file", str(ex["key"]),
                   str(export), *extra, env=env)


def test_an_import_killed_after_its_keys_leaves_no_orphan_key_and_completes_when_rerun(
        exported: dict[str, Any]) -> None:
    """Before: the keys were committed, the rows not; the keys stayed in b's key store with
    no bucket (a copy of each moved key that no shred or erasure would destroy), and a
    re-run imported the tenants with a second copy of every key."""
    export = _export(exported, "killed-after-keys")
    b = _new_node(exported, "b")
    killed = _import(exported, b, export, failpoint="import.keys_committed")
    assert killed.returncode == -signal.SIGKILL and export.exists()
    again = _import(exported, b, export, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["records"] == exported["rows"] and not export.exists()
    assert report["partitions"] == "0-15"  # as exported
    deks, buckets = _keys_and_buckets(b, exported["key"])
    assert deks == buckets and len(buckets) == exported["buckets"]  # each key once
    assert again.stderr.strip() == (
        f"An interrupted `cluster import` into this node was rolled back: its "
        f"{exported['buckets']} data keys were removed (their rows had not been stored); "
        "importing that file again completes it.")
    texts = _texts(b, exported["key"])
    assert texts == exported["texts"] and None not in texts.values()
    assert len(texts) == exported["rows"]


def test_a_node_opened_after_an_import_killed_after_its_keys_holds_none_of_them(
        exported: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """The node served (its store opened for writing) instead of the import being re-run:
    the keys of the rows that never arrived are removed, and it says so once."""
    export = _export(exported, "killed-then-served")
    e = _new_node(exported, "e")
    killed = _import(exported, e, export, failpoint="import.keys_committed")
    assert killed.returncode == -signal.SIGKILL
    check = run_cli("serve", "--check", "--json", "--data-dir", str(e), "--key-file",
                    str(exported["key"]))  # read-only: says what serve will do, does nothing
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["at_start"] == [
        "remove the data keys of an interrupted `cluster import`"]
    with caplog.at_level("WARNING", logger="semtrace.store"):
        deks, buckets = _keys_and_buckets(e, exported["key"])
    assert deks == buckets == []  # no key without its rows
    said = [r.getMessage() for r in caplog.records if r.name == "semtrace.store"]
    assert said == [f"An interrupted `cluster import` into this node was rolled back: its "
                    f"{exported['buckets']} data keys were removed (their rows had not been "
                    "stored); importing that file again completes it."]
    os.remove(export)


def test_an_import_killed_after_its_rows_is_finished_by_a_rerun(
        exported: dict[str, Any]) -> None:
    """Before: the rows were committed but the export file (holding wrapped data keys)
    stayed; a re-run said `This node already holds data of tenant acme` and kept it."""
    export = _export(exported, "killed-after-rows")
    c = _new_node(exported, "c")
    killed = _import(exported, c, export, failpoint="import.rows_committed")
    assert killed.returncode == -signal.SIGKILL and export.exists()
    again = _import(exported, c, export)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (f"{export} was imported here before (that run stopped "
                                    "before it deleted the file); nothing was imported again, "
                                    "and the file is deleted now.")
    assert not export.exists()
    deks, buckets = _keys_and_buckets(c, exported["key"])
    assert deks == buckets and len(buckets) == exported["buckets"]
    assert _texts(c, exported["key"]) == exported["texts"]
    audit = run_cli("audit", "log", "--data-dir", str(c), "--key-file", str(exported["key"]),
                    "--json")  # the import is on c's audit log though the first run died
    assert audit.returncode == 0, audit.stderr
    assert [e["event"] for e in json.loads(audit.stdout)].count("cluster_import") == 1


def test_an_import_refused_midway_leaves_no_key_either(exported: dict[str, Any],
                                                      tmp_path: Path) -> None:
    """An error between the two commits (here the data file made read-only for the rows'
    table, by a trigger) is rolled back at once: nothing of the import stays."""
    export = _export(exported, "refused")
    d = _new_node(exported, "d")
    rt = _open(d, exported["key"])
    try:
        rt.store.db.execute("CREATE TRIGGER no_records BEFORE INSERT ON records "
                            "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    finally:
        rt.close()
    refused = _import(exported, d, export)
    assert refused.returncode != 0 and export.exists()
    deks, buckets = _keys_and_buckets(d, exported["key"])
    assert deks == buckets == []
    os.remove(export)


def test_importing_a_partitions_tenants_makes_it_the_nodes_again(
        exported: dict[str, Any]) -> None:
    """A node that gave acme's partition away (`cluster forget`) and gets its tenants back
    by import serves it again: the forget's note is gone."""
    from appliance.cluster import given_away
    from appliance.cluster.partition import partition_of

    export = _export(exported, "coming-back")
    f = _new_node(exported, "f")
    node = ["--data-dir", str(f), "--key-file", str(exported["key"])]
    p = str(partition_of("acme", 16))
    r = run_cli("cluster", "forget", *node, "--partitions", p, "--of", "16", "--yes")
    assert r.returncode == 0, r.stderr
    imported = _import(exported, f, export)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == (  # before: only the counts, no next step
        f"Imported 2 tenants, {exported['rows']} records of partitions 0-15. Next: "
        "`semtrace cluster forget --partitions 0-15 --yes` on the node they came from, then "
        "start this node with 0-15 in its --own (`own` in cluster.toml).")
    rt = _open(f, exported["key"])
    try:  # (a reclaim would still find the import's note: a node that consumed its
        # partitions since the export would make the copy stale, `cluster/imported.py`)
        assert given_away.read(rt.store.db) is None
    finally:
        rt.close()


def test_forget_shows_its_progress_on_a_terminal(exported: dict[str, Any]) -> None:
    """Before: `cluster forget` (keys, then every table's rows in one transaction, then the
    freed pages) said nothing until it was done, however large the node."""
    import shutil

    from test_cluster_ops import _on_a_terminal

    copy = exported["tmp"] / "a-copy"
    shutil.copytree(exported["tmp"] / "a", copy)
    code, shown = _on_a_terminal("cluster", "forget", "--data-dir", str(copy), "--key-file",
                                 str(exported["key"]), "--partitions", "0-15", "--of", "16",
                                 "--yes", "--discard")  # a copy: its tenants never exported
    assert code == 0, shown
    assert "forget" in shown and "%" in shown  # a progress bar on the terminal
    deks, buckets = _keys_and_buckets(copy, exported["key"])
    assert deks == buckets == []  # and it did forget everything


def test_forget_refuses_to_destroy_records_no_export_carries(exported: dict[str, Any]) -> None:
    """Before: `cluster forget` run before the export, or on the wrong node, destroyed the
    tenants' data keys at once: their records existed nowhere else."""
    import shutil

    copy = exported["tmp"] / "a-unexported"
    shutil.copytree(exported["tmp"] / "a-never-exported", copy)
    node = ["--data-dir", str(copy), "--key-file", str(exported["key"])]
    forget = ["cluster", "forget", *node, "--partitions", "0-15", "--of", "16", "--yes"]
    r = run_cli(*forget)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "semtrace: 2 tenants of partitions 0-15 have records here that no export from this "
        "node carries (e.g. acme: never exported, or written to since), and forgetting would "
        "destroy them: export them first (`semtrace cluster export --partitions 0-15`), or add "
        "--discard to destroy them anyway. Nothing was changed.")
    assert _texts(copy, exported["key"]) == exported["texts"]  # every record still readable
    out = exported["tmp"] / "unexported.semtrace"
    r = run_cli("cluster", "export", *node, "--partitions", "0-15", "--of", "16", "--out",
                str(out))
    assert r.returncode == 0, r.stderr
    r = run_cli(*forget, "--json")  # exported now: forgotten
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["records"] == exported["rows"]
    os.remove(out)


def test_forget_refuses_new_records_even_when_as_many_went_since_the_export(
        exported: dict[str, Any]) -> None:
    """Before: the check compared record counts. After the export one of acme's users was
    erased and another user's prompts were stored, as many as the erased ones: the count
    was as exported, and forget destroyed the new prompts, which no export carries."""
    import shutil

    copy = exported["tmp"] / "a-served-after-export"
    shutil.copytree(exported["tmp"] / "a-never-exported", copy)
    node = ["--data-dir", str(copy), "--key-file", str(exported["key"])]
    out = exported["tmp"] / "served-after.semtrace"
    r = run_cli("cluster", "export", *node, "--partitions", "0-15", "--of", "16", "--out",
                str(out), "--json")
    assert r.returncode == 0, r.stderr
    os.remove(out)  # imported elsewhere, say
    r = run_cli("erase", *node, "--tenant", "acme", "--user", "acme-0", "--reason", "request")
    assert r.returncode == 0, r.stderr
    stream = exported["tmp"] / "after-export.jsonl"
    stream.write_text("".join(json.dumps({
        "tenant": "acme", "user_id": "acme-late", "request_id": f"late-{i}",
        "ts": f"{DAY}T11:{i:02d}:00Z", "text": text}) + "\n" for i, text in enumerate(TURNS)))
    r = run_cli("replay", str(stream), "--out", str(exported["tmp"] / "late.jsonl"), *node)
    assert r.returncode == 0, r.stderr
    before = _texts(copy, exported["key"])
    assert len(before) == exported["rows"]  # as many records as exported: 4 gone, 4 new
    forget = ["cluster", "forget", *node, "--partitions", "0-15", "--of", "16", "--yes"]
    r = run_cli(*forget)
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip().startswith(
        "semtrace: 1 tenant of partitions 0-15 has records here that no export from "
        "this node carries (e.g. acme: never exported, or written to since)")
    assert _texts(copy, exported["key"]) == before  # nothing was changed
    rt = _open(copy, exported["key"])
    try:  # what the note holds: bucket ids and digests, no user id or text
        note = rt.store.db.execute("SELECT value FROM meta WHERE key = 'cluster_exported'"
                                   ).fetchone()[0]
    finally:
        rt.close()
    noted = json.loads(note)
    assert set(noted) == {"acme", "globex"} and "acme-" not in note
    assert all(b.isdigit() and int(d, 16) >= 0 for buckets in noted.values()
               for b, d in buckets.items())
    r = run_cli(*forget, "--discard", "--json")  # told to: destroyed
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["records"] == len(before)


def test_importing_a_file_that_is_no_export_says_so(tmp_path: Path) -> None:
    """Before: a text file, an empty file or the node's own database file (which opens with
    the cluster key) was "exported by a node with another master key" or "by another version
    of semtrace", and a folder "does not exist": an operator chased keys and versions."""
    key = tmp_path / "cluster.key"
    data = tmp_path / "b"
    assert run_cli("init", "--data-dir", str(data), "--new-key-file", str(key)).returncode == 0
    (tmp_path / "notes.txt").write_text("acme partition 3, moved on Tuesday\n")
    (tmp_path / "empty.semtrace").touch()
    (tmp_path / "folder").mkdir()
    shutil.copyfile(data / "semtrace.db", tmp_path / "store.semtrace")
    before = _keys_and_buckets(data, key)
    for name in ("notes.txt", "empty.semtrace", "folder", "store.semtrace"):
        r = run_cli("cluster", "import", "--data-dir", str(data), "--key-file", str(key),
                    str(tmp_path / name))
        assert r.returncode == 2 and r.stdout == "", (name, r.stderr)
        assert r.stderr.strip() == (f"semtrace: {tmp_path / name} is not a file written by "
                                    "`semtrace cluster export`; nothing was imported."), r.stderr
        assert (tmp_path / name).exists()  # kept: nothing was imported
    assert (tmp_path / "empty.semtrace").stat().st_size == 0
    assert _keys_and_buckets(data, key) == before


def test_a_copy_exported_again_before_it_was_consumed_keeps_its_first_origin(
        exported: dict[str, Any]) -> None:
    """a's partition imported on b and, before b consumed it, exported on to c (the wrong
    node first, say). Before: b's export carried no origin (b had noted no start of its
    own), so c noted nothing, and c consumed the partition from its copy even after a,
    started again with it (the move cut short), stored newer prompts. Now b passes a's
    origin on, and c refuses a partition whose consumer a started since."""
    from appliance.cluster import given_away, imported
    from appliance.cluster.partition import partition_of
    from appliance.cluster.stream import LastConsumer
    from appliance.errors import SemtraceError

    tmp, key = exported["tmp"], exported["key"]
    p = partition_of("acme", 16)
    a = tmp / "chain-a"
    shutil.copytree(tmp / "a-never-exported", a)
    rt = _open(a, key)  # as a start of a that consumed p notes it
    try:
        a_id = given_away.data_dir_id(rt.store.db)
        given_away.note_consumed(rt.store.db, [p], 16, "a", "a-start-1")
    finally:
        rt.close()

    def move(src: Path, dst: Path, name: str) -> None:
        out = tmp / f"{name}.semtrace"
        r = run_cli("cluster", "export", "--data-dir", str(src), "--key-file", str(key),
                    "--partitions", str(p), "--of", "16", "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert _import(exported, dst, out).returncode == 0

    b, c = _new_node(exported, "chain-b"), _new_node(exported, "chain-c")
    move(a, b, "a-to-b")
    move(b, c, "b-to-c")  # b never consumed p
    rt = _open(c, key)
    try:
        source = imported.read(rt.store.db).partitions[p]
        assert (source.data_dir, source.node, source.start) == (a_id, "a", "a-start-1")
        c_id = given_away.data_dir_id(rt.store.db)
        since = {p: LastConsumer("a", data_dir=a_id, start="a-start-2")}  # a started again
        with pytest.raises(SemtraceError, match=f"Partition {p} was consumed by node 'a' "
                           "after its tenants were exported from 'a' to this node"):
            imported.refuse(rt.store.db, [p], 16, since, c_id)
        unchanged = {p: LastConsumer("a", data_dir=a_id, start="a-start-1")}
        imported.refuse(rt.store.db, [p], 16, unchanged, c_id)  # nobody consumed since
    finally:
        rt.close()


def _import_in_process(data: Path, key: Path, export: Path) -> str:
    """`cluster import` of `export` into `data` as the command runs it: "ok", or the sentence
    it refuses with."""
    from appliance.cluster.move import import_tenants
    from appliance.errors import SemtraceError

    rt = _open(data, key)
    try:
        import_tenants(rt.store, rt.keyring, export)
        return "ok"
    except SemtraceError as exc:
        return str(exc)
    finally:
        rt.close()


def test_a_damaged_export_is_refused_naming_the_file(exported: dict[str, Any]) -> None:
    """An export cut short (a copy interrupted at a page boundary) or with a byte altered
    since it was written. Before: "exported by a node with another master key", "is not a
    file written by `semtrace cluster export`", or "The store cannot be read: a database file
    is damaged (restore it from a backup)": the operator was sent to the keys or to restore
    the node's own store, which was fine. Now one sentence names the file; nothing is
    imported, the file is kept."""
    ex = exported
    export = _export(ex, "damaged")
    whole = export.read_bytes()
    export.unlink()
    pages = len(whole) // 4096
    fresh = _new_node(ex, "damaged-into")
    before = _keys_and_buckets(fresh, ex["key"])
    damaged = ex["tmp"] / "damaged.semtrace"

    def said(name: Path) -> str:
        return (f"{name} is damaged (cut short or altered since `semtrace cluster export` "
                "wrote it: its pages do not verify); copy it again from the node that "
                "exported it, or export again there. Nothing was imported.")

    for size in (pages // 2 * 4096, (pages - 1) * 4096):  # cut short
        damaged.write_bytes(whole[:size])
        r = run_cli("cluster", "import", "--data-dir", str(fresh), "--key-file",
                    str(ex["key"]), str(damaged))
        assert (r.returncode, r.stderr.strip()) == (2, f"semtrace: {said(damaged)}"), size
        assert damaged.exists()
    reference = ex["tmp"] / "damaged-reference"
    shutil.copytree(fresh, reference)
    damaged.write_bytes(whole)
    assert _import_in_process(reference, ex["key"], damaged) == "ok"
    texts = _texts(reference, ex["key"])
    assert texts
    # a byte altered in each page but the first (which another key fails to open as well):
    # refused in that sentence where the import reads the page, imported whole where not
    outcomes = []
    for page in range(1, pages):
        altered = bytearray(whole)
        altered[page * 4096 + 100] ^= 1
        damaged.write_bytes(bytes(altered))
        into = ex["tmp"] / f"altered-{page}"
        shutil.copytree(fresh, into)
        outcomes.append(_import_in_process(into, ex["key"], damaged))
        if outcomes[-1] == "ok":
            assert _texts(into, ex["key"]) == texts  # every record as exported
        shutil.rmtree(into)
    assert set(outcomes) == {"ok", said(damaged)}, set(outcomes)
    refused_at = 1 + outcomes.index(said(damaged))
    altered = bytearray(whole)
    altered[refused_at * 4096 + 100] ^= 1
    damaged.write_bytes(bytes(altered))
    r = run_cli("cluster", "import", "--data-dir", str(fresh), "--key-file", str(ex["key"]),
                str(damaged))
    assert (r.returncode, r.stderr.strip()) == (2, f"semtrace: {said(damaged)}")
    assert _keys_and_buckets(fresh, ex["key"]) == before  # nothing was imported
