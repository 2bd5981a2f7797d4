"""A data subject's request names a person, not a tenant: `erase --all-tenants` searches
every tenant (a user id is pseudonymised per tenant), erases the user wherever found,
audits each tenant searched, keeps a legal hold, and a tenant-bound role reaches only its
tenants."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import init_store, write_stream
from test_spine import run_cli

CANARY = "quimby.vexmoor@example.com"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A data dir where alice writes in acme (two days) and globex, and bob in acme."""
    tmp = tmp_path_factory.mktemp("everywhere")
    args, pw, cpw = init_store(tmp)
    src = write_stream(tmp / "in.jsonl", [
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
         "text": f"Please send the lease to {CANARY} today."},
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-03T09:00:00Z",
         "text": "How do I renew the TLS certificate on the mail server?"},
        {"tenant": "globex", "user_id": "alice", "ts": "2026-03-03T10:00:00Z",
         "text": f"Forward my pension statement to {CANARY} please."},
        {"tenant": "acme", "user_id": "bob", "ts": "2026-03-03T11:00:00Z",
         "text": "Summarise the quarterly report for the board."}])
    assert run_cli("replay", str(src), "--out", str(tmp / "o.jsonl"), *args).returncode == 0
    yield {"tmp": tmp, "pw": pw, "cpw": cpw}


def _copy(replayed: dict[str, object], tmp_path: Path) -> list[str]:
    shutil.copytree(Path(str(replayed["tmp"])) / "data", tmp_path / "data")
    return ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(replayed["pw"])]


def _policies(tmp_path: Path, *, access: str = "", holds: str = "") -> dict[str, str]:
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    with (pdir / "access.toml").open("a") as fh:
        fh.write(access)
    if holds:
        text = (pdir / "retention.toml").read_text()
        (pdir / "retention.toml").write_text(text.replace("legal_holds = []", holds))
    return {"SEMTRACE_POLICY_DIR": str(pdir)}


def _users(args: list[str]) -> list[tuple[str, int]]:
    threads = json.loads(run_cli("threads", "list", "--json", *args).stdout)
    return sorted((t["tenant"], t["turns"]) for t in threads)


def test_erasing_a_user_in_every_tenant_leaves_nothing_of_them_and_audits_each_tenant(
        replayed: dict[str, object], tmp_path: Path) -> None:
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _copy(replayed, tmp_path)
    ids = [r["record_id"] for t in json.loads(run_cli("threads", "list", "--json",
                                                       *args).stdout)
           for r in json.loads(run_cli("threads", "show", t["thread_id"], "--json",
                                       *args).stdout)["records"]]
    out = run_cli("erase", "--user", "alice", "--all-tenants", "--reason", "DSAR 31",
                  "--json", *args)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert {(r["tenant"], r["records"]) for r in done["tenants"]} == {("acme", 2),
                                                                     ("globex", 1)}
    assert done["records"] == 3 and done["complete"] is True
    assert len({r["user"] for r in done["tenants"]}) == 2  # one pseudonym per tenant
    assert _users(args) == [("acme", 1)]  # bob's thread alone
    log = json.loads(run_cli("audit", "log", "--json", "--event", "erase", *args).stdout)
    assert sorted(e["details"]["tenant"] for e in log) == ["acme", "globex"]
    assert "alice" not in out.stdout + json.dumps(log) and CANARY not in json.dumps(log)
    rt = open_runtime(tmp_path / "data", read_passphrase_file(Path(str(replayed["pw"]))))
    try:  # nothing of hers in the decrypted tables, and her originals are gone
        db = rt.store.db
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
        texts = " ".join(r.text or "" for r in rt.store.records("1=1", ()))
        vault = db.execute("SELECT count(*) FROM vault").fetchone()[0]
    finally:
        rt.close()
    assert CANARY not in dump + texts and "lease" not in texts and "pension" not in texts
    assert vault == 0
    for record in ids[:1] + ids[-1:]:
        shown = run_cli("reveal", str(record), "--role", "compliance", "--reason", "DSAR 31",
                        "--compliance-passphrase-file", str(replayed["cpw"]), *args)
        assert CANARY not in shown.stdout
    again = run_cli("erase", "--user", "alice", "--all-tenants", "--reason", "DSAR 31", *args)
    # globex holds no live data any more, but it held some: it is searched (and tombstoned)
    assert again.returncode == 0 and "No records of this user in any of the 2" in again.stdout
    assert "Tombstone with 0 records in 2 tenants: acme, globex" in again.stdout


def test_a_tenant_bound_role_erases_everywhere_it_sees_and_a_hold_keeps_its_tenant(
        replayed: dict[str, object], tmp_path: Path) -> None:
    args = _copy(replayed, tmp_path)
    env = _policies(tmp_path, access='\n[roles.dpo-globex]\npermissions = ["erase"]\n'
                    'tenants = ["globex"]\n')
    bound = run_cli("erase", "--user", "alice", "--all-tenants", "--reason", "DSAR 32",
                    "--role", "dpo-globex", *args, env=env)
    assert bound.returncode == 0, bound.stderr
    assert "Searched 1 tenant the role sees: erased 1 record" in bound.stdout
    assert {t["tenant"] for t in json.loads(
        run_cli("threads", "list", "--json", *args).stdout)} == {"acme"}

    args = _copy(replayed, tmp_path / "held")
    env = _policies(tmp_path / "held", holds='legal_holds = [{ tenant = "globex", '
                    'user_id = "alice", reason = "case 5" }]')
    held = run_cli("erase", "--user", "alice", "--all-tenants", "--reason", "DSAR 33",
                   *args, env=env)
    assert held.returncode == 5
    assert "globex: user u_" in held.stdout and "on legal hold" in held.stdout
    assert "acme: erased 2 records" in held.stdout
    assert {t["tenant"] for t in json.loads(
        run_cli("threads", "list", "--json", *args).stdout) if t["turns"]} == {"acme",
                                                                             "globex"}
    # bob has nothing in globex: its hold keeps nothing of his, and is not reported as if
    bob = run_cli("erase", "--user", "bob", "--all-tenants", "--reason", "DSAR 35", *args,
                  env=_policies(tmp_path / "tenant-hold", holds='legal_holds = [{ tenant = '
                                '"globex", reason = "case 6" }]'))
    assert bob.returncode == 0 and "legal hold" not in bob.stdout, bob.stdout + bob.stderr
    assert "erased 1 record in 1 of them" in bob.stdout


@pytest.mark.parametrize("extra,words", [
    ([], "Give --tenant T or --all-tenants."),
    (["--tenant", "acme", "--all-tenants"], "not both")])
def test_an_erasure_naming_no_tenant_or_both_is_refused_and_not_audited(
        replayed: dict[str, object], tmp_path: Path, extra: list[str], words: str) -> None:
    args = _copy(replayed, tmp_path)
    before, threads = run_cli("audit", "log", "--json", *args).stdout, _users(args)
    out = run_cli("erase", "--user", "alice", "--reason", "DSAR 34", *extra, *args)
    assert out.returncode == 2 and words in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert run_cli("audit", "log", "--json", *args).stdout == before
    assert _users(args) == threads and len(threads) >= 3


def test_an_erasure_in_a_tenant_the_data_dir_never_heard_of_says_so(
        replayed: dict[str, object], tmp_path: Path) -> None:
    """`--tenant Acme` for 'acme' (tenant names are case-sensitive) used to read as 'no
    records of this user': the DSAR looked done while her records stayed in acme. It still
    leaves a tombstone (a tenant the gateway is about to send), and says so on stderr."""
    args = _copy(replayed, tmp_path)
    before = _users(args)
    for attempt in range(2):  # the first erasure's tombstone does not make 'Acme' known
        typo = run_cli("erase", "--tenant", "Acme", "--user", "alice", "--reason", "DSAR 36",
                       "--json", *args)
        assert typo.returncode == 0 and json.loads(typo.stdout)["tenant_known"] is False
        assert "Traceback" not in typo.stderr and len(typo.stderr.strip().splitlines()) == 1
        assert "never heard of tenant 'Acme' (it knows 'acme')" in typo.stderr, attempt
        assert "alice" not in typo.stdout + typo.stderr
    assert _users(args) == before  # nothing erased
    right = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "DSAR 36",
                    "--json", *args)
    assert right.returncode == 0 and right.stderr == ""
    assert json.loads(right.stdout)["tenant_known"] is True
    assert _users(args) == [("acme", 1), ("globex", 1)]  # bob's thread, her globex one
    from appliance.cli.erasure import _unheard_of

    # a tenant-bound role is told of no tenant outside its own
    assert "it knows" not in str(_unheard_of("ACME", ["acme", "globex"], ["globex"]))
    assert _unheard_of("acme", ["acme"], None) is None
