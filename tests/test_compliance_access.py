"""A data subject's right of access (GDPR art. 15): `semtrace compliance access` writes one
new file with every record held about one user of a tenant, the originals only for a role
that may reveal and holds the compliance credential, and audits it. Real store (SQLCipher),
real redaction (Presidio) and the bundled model, through the CLI as an officer runs it."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import init_store, scan_for, write_stream
from test_spine import run_cli

ALICE_PII = ["bart.quagmire@example.com", "212-555-0187"]
BOB_PII = ["zeb.fairweather@example.org", "Zebulon"]
ROWS = [
    {"tenant": "acme", "user_id": "alice-4471", "ts": "2026-03-02T09:00:00Z",
     "text": "Please write to me at bart.quagmire@example.com about the invoice."},
    {"tenant": "acme", "user_id": "alice-4471", "ts": "2026-03-02T09:01:00Z",
     "text": "Or call me on 212-555-0187 tomorrow morning."},
    {"tenant": "acme", "user_id": "alice-4471", "ts": "2026-03-05T14:00:00Z",
     "text": "What is a good sourdough hydration for a beginner?"},
    {"tenant": "acme", "user_id": "bob-9920", "ts": "2026-03-02T09:00:30Z",
     "text": "I am Zebulon, mail zeb.fairweather@example.org about the invoice."},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A data dir with a compliance key; three prompts of alice, one of bob, replayed."""
    tmp = tmp_path_factory.mktemp("access")
    args, pw, cpw = init_store(tmp)
    src = write_stream(tmp / "in.jsonl", ROWS)
    assert run_cli("replay", str(src), "--out", str(tmp / "o.jsonl"), *args).returncode == 0
    yield {"tmp": tmp, "args": args, "cpw": cpw}


def _access(store: dict[str, object], out: Path, *extra: str,
            user: str = "alice-4471", tenant: str = "acme",
            reason: str = "DSAR ticket 118",
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
    tmpdir = Path(str(store["tmp"])) / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    done = run_cli("compliance", "access", "--tenant", tenant, "--user", user, "--reason",
                   reason, "--out", str(out), *extra, *store["args"],  # type: ignore[misc]
                   env={"TMPDIR": str(tmpdir), **(env or {})})
    return done.returncode, done.stdout, done.stderr


def _log(store: dict[str, object]) -> list[dict[str, object]]:
    done = run_cli("audit", "log", "--json", "--all", *store["args"])  # type: ignore[misc]
    entries: list[dict[str, object]] = json.loads(done.stdout)
    return entries


def test_the_export_holds_exactly_the_users_records_redacted_and_is_audited(
        store: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "alice.json"
    code, stdout, stderr = _access(store, out, "--json")
    assert code == 0, stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text())
    records = [r for t in doc["threads"] for r in t["records"]]
    assert doc["records_count"] == len(records) == 3 and doc["originals_included"] is False
    texts = " ".join(r["text"] for r in records)
    assert "sourdough" in texts and "<EMAIL_ADDRESS" in texts and "<PHONE_NUMBER" in texts
    assert all("originals" not in r for r in records)
    # nothing of bob, nothing in clear of alice; the file says who by pseudonym only
    whole = out.read_text()
    assert [c for c in ALICE_PII + BOB_PII + ["alice-4471", "bob-9920"] if c in whole] == []
    assert doc["user"].startswith("u_") and doc["tenant"] == "acme"
    assert json.loads(stdout) == {"out": str(out), "tenant": "acme", "user": doc["user"],
                                  "threads": len(doc["threads"]), "records": 3,
                                  "originals": False, "unattributable_buckets": 0,
                                  "erased": False, "erased_at": None}
    assert scan_for(Path(str(store["tmp"])) / "tmpdir", ALICE_PII + BOB_PII) == []
    entry = _log(store)[-1]
    assert entry["event"] == "subject_access"
    assert entry["details"] == {"tenant": "acme", "user": doc["user"], "role": "compliance",  # type: ignore[index]
                                "reason": "DSAR ticket 118", "threads": len(doc["threads"]),
                                "records": 3, "originals": False}


def test_with_the_compliance_credential_the_export_holds_the_users_originals_only(
        store: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "alice-full.json"
    code, stdout, stderr = _access(store, out, "--compliance-passphrase-file",
                                   str(store["cpw"]),
                                   env={"SEMTRACE_PROGRESS_INTERVAL_S": "0"})  # every step
    assert code == 0, stderr
    # progress, as a script or unit sees it: counts of threads, never data
    assert "semtrace: access: threads read: 2 of 2 (100%)" in stderr.splitlines()
    assert "with the originals the vault keeps" in stdout
    # counts as words, as `demo` and the TUI say them (was "3 record(s) in 2 thread(s)")
    assert stdout.startswith("Wrote 3 records in 2 threads of u_"), stdout
    assert [c for c in ALICE_PII if c in stdout + stderr] == []  # printed nowhere but the file
    doc = json.loads(out.read_text())
    assert doc["originals_included"] is True and doc["records_count"] == 3
    originals = {o["original"] for t in doc["threads"] for r in t["records"]
                 for o in r["originals"] or []}
    assert set(ALICE_PII) <= originals
    assert [c for c in BOB_PII if c in out.read_text()] == []
    assert scan_for(Path(str(store["tmp"])) / "tmpdir", ALICE_PII) == []
    log = _log(store)
    assert log[-1]["event"] == "subject_access" and log[-1]["details"]["originals"] is True  # type: ignore[index]
    assert [c for c in ALICE_PII if c in json.dumps(log)] == []


def test_an_analyst_is_refused_the_originals_audited_and_nothing_written(
        store: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "refused.json"
    code, _, stderr = _access(store, out, "--role", "analyst", "--compliance-passphrase-file",
                              str(store["cpw"]))
    assert code == 4 and "'reveal' permission" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()
    entry = _log(store)[-1]
    assert entry["event"] == "subject_access_denied"
    assert entry["details"]["role"] == "analyst" and entry["details"]["originals"] is True  # type: ignore[index]


@pytest.mark.parametrize("case", ["existing", "tenant", "user", "passphrase", "reason"])
def test_bad_input_is_one_sentence_and_writes_nothing(
        store: dict[str, object], tmp_path: Path, case: str) -> None:
    out = tmp_path / "out.json"
    extra: list[str] = []
    kwargs: dict[str, str] = {}
    if case == "existing":
        out.write_text("kept\n")
    elif case == "tenant":
        kwargs["tenant"] = "Acme"
    elif case == "user":
        kwargs["user"] = "nobody-here-77"
    elif case == "passphrase":
        wrong = tmp_path / "wrong"
        wrong.touch(mode=0o600)
        wrong.write_text("not the compliance pass phrase\n")
        extra = ["--compliance-passphrase-file", str(wrong)]
    else:
        kwargs["reason"] = "DSAR from alice-4471"
    before = len(_log(store))
    code, stdout, stderr = _access(store, out, *extra, **kwargs)
    expected = {"existing": (2, "already exists"), "tenant": (2, "never held data of tenant"),
                "user": (1, "No records of that user in acme"),
                "passphrase": (2, "compliance"), "reason": (2, "must not hold the user id")}
    assert (code, expected[case][1] in stderr) == (expected[case][0], True), stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert stdout == ""
    if case == "existing":
        assert out.read_text() == "kept\n"
    else:
        assert not out.exists()
    after = _log(store)[before:]
    # a refused credential and a request that found nothing are audited; bad options not
    audited = {"passphrase": ["subject_access_denied"], "user": ["subject_access"]}
    assert [e["event"] for e in after] == audited.get(case, [])
    assert "nobody-here-77" not in json.dumps(after)


def test_on_a_cluster_node_no_records_says_where_a_tenants_records_live(
        store: dict[str, object], tmp_path: Path) -> None:
    """On a node of a cluster a tenant's records are kept only by its owner: 'no records of
    that user' alone would send the officer away from records that exist there."""
    import shutil

    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    cluster = (pdir / "cluster.toml").read_text()
    (pdir / "cluster.toml").write_text(cluster.replace('url = ""',
                                                       'url = "nats://127.0.0.1:4222"', 1))
    out = tmp_path / "none.json"
    code, _, stderr = _access(store, out, user="nobody-here-77",
                              env={"SEMTRACE_POLICY_DIR": str(pdir)})
    assert code == 1 and "No records of that user in acme" in stderr
    assert "the node that owns the tenant (`semtrace cluster status --tenant T`" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
    single = _access(store, out, user="nobody-here-77")[2]  # a single host: no word of it
    assert "cluster" not in single


def test_a_role_bound_to_another_tenant_is_refused_audited_and_nothing_written(
        store: dict[str, object], tmp_path: Path) -> None:
    import shutil

    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    with (pdir / "access.toml").open("a") as fh:
        fh.write('\n[roles.officer-globex]\ndescription = "globex only"\n'
                 'permissions = ["threads:read", "reveal"]\ntenants = ["globex"]\n')
    out = tmp_path / "other.json"
    code, _, stderr = _access(store, out, "--role", "officer-globex",
                              env={"SEMTRACE_POLICY_DIR": str(pdir)})
    assert code == 4 and "limited to tenant globex" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
    entry = _log(store)[-1]
    assert entry["event"] == "subject_access_denied"
    assert entry["details"]["role"] == "officer-globex"  # type: ignore[index]


def test_access_to_an_erased_user_says_the_user_was_erased(
        store: dict[str, object], tmp_path: Path) -> None:
    erased = run_cli("erase", "--tenant", "acme", "--user", "bob-9920", "--reason",
                     "ticket 12", *store["args"])  # type: ignore[misc]
    assert erased.returncode == 0, erased.stderr
    out = tmp_path / "bob.json"
    code, _, stderr = _access(store, out, user="bob-9920")
    assert code == 1 and "No records of that user in acme (the user was erased on " in stderr
    assert not out.exists() and "bob-9920" not in stderr
