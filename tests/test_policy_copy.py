"""The backup's copy of retention.toml: each legal hold by pseudonym, and the operator's
comments and layout kept (appliance/policy_copy.py, appliance/toml_spans.py)."""

from __future__ import annotations

import json
from pathlib import Path

from test_legal_holds import _store_with_holds
from test_spine import run_cli

HOLDS = '''# Holds for the Globex matter: ask legal@example.com before lifting one
[[legal_holds]]
tenant = "acme"
user_id = 'alice'   # Alice, accounting
reason = """litigation hold
for Alice"""

[[legal_holds]]
tenant = "initech"
reason = "case 9"   # the whole tenant, until the audit closes

[[legal_holds]]
tenant = "acme"
"user_id" = "quimby-7731"
reason = "case 7"   # opened 2026-03, see the ticket
'''


def test_a_backups_copy_of_the_retention_policy_keeps_its_comments_and_layout(
        tmp_path: Path, passphrase_file: Path) -> None:
    """`semtrace backup` wrote retention.toml's copy from the parsed file: an operator
    restoring found every comment of theirs gone and the holds rewritten inline. Now only
    the holds' raw user ids (by pseudonym), a reason naming its user and a comment naming
    one or an e-mail address change; the rest reads as written, and the copy still holds
    the same buckets and no raw user id."""
    from conftest import scan_for

    from appliance.policy_copy import WITHHELD_COMMENT

    args, env = _store_with_holds(tmp_path, passphrase_file, HOLDS)
    original = (Path(env["SEMTRACE_POLICY_DIR"]) / "retention.toml").read_text()
    dest = tmp_path / "copy"
    made = run_cli("backup", str(dest), "--json", *args, env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["holds_by_pseudonym"] == [1, 3]
    copy = (dest / "policies" / "retention.toml").read_text()
    assert scan_for(dest, ["alice", "Alice", "quimby-7731", "legal@example.com"]) == []
    preview = json.loads(run_cli("retention", "run", "--dry-run", "--json", *args,
                                 env=env).stdout)
    (alice,) = {h["user"] for h in preview["held_buckets"]}

    lines = copy.splitlines()
    assert lines[:3] == [
        "# The retention policy in use when this backup was taken, written by `semtrace "
        "backup`", "# with each legal hold by pseudonym (so that it holds no raw user id); "
        "its comments", "# and layout are kept, but for those naming a held user or an "
        "e-mail address."]
    # the operator's lines, in their order and layout, but for what named a person
    kept = [line for line in original.splitlines() if not any(
        w in line.lower() for w in ("alice", "quimby", "legal@", 'reason = """'))]
    assert [line for line in lines[3:] if line in kept] == kept
    assert WITHHELD_COMMENT in lines  # the comment with the e-mail address
    assert f'pseudonym = "{alice}"   {WITHHELD_COMMENT}' in lines  # 'Alice, accounting'
    assert 'reason = "(withheld: it names the held user or an e-mail address)"' in lines
    assert sum(line.startswith('pseudonym = "u_') for line in lines) == 2
    assert lines.count("[[legal_holds]]") == 3 and "\nlegal_holds = [" not in copy

    # restored, the copy's policies put in place hold the same buckets there
    restored = ["--data-dir", str(tmp_path / "restored"), "--passphrase-file",
                str(passphrase_file)]
    assert run_cli("restore", str(dest), *restored, env=env).returncode == 0
    again = run_cli("retention", "run", "--dry-run", "--json", *restored,
                    env={"SEMTRACE_POLICY_DIR": str(dest / "policies")})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["held_buckets"] == preview["held_buckets"]
    assert json.loads(again.stdout)["idle_holds"] == preview["idle_holds"]


def test_a_policy_the_in_place_edit_cannot_map_is_left_to_the_written_copy() -> None:
    """Pure: a hold whose user_id key is spelled with an escape is not found one for one,
    so no in-place edit is offered (the copy is then written from the parsed file, its
    comments not kept, as before); a comment naming a short id only as a word is withheld."""
    from appliance.policy_copy import WITHHELD_COMMENT, in_place

    raw = [{"tenant": "acme", "user_id": "alice"}]
    holds = [{"tenant": "acme", "pseudonym": "u_3f9c0a17d2b4e6f8a1c5"}]
    odd = '[[legal_holds]]\ntenant = "acme"\n"user\\u005fid" = "alice"\n'
    assert in_place(odd, raw, holds, ["alice"]) is None
    short = [{"tenant": "acme", "user_id": "u7"}]
    text = '# u7 asked\n# u70 did not\n[[legal_holds]]\ntenant = "acme"\nuser_id = "u7"\n'
    assert in_place(text, short, holds, ["u7"]) == (
        f'{WITHHELD_COMMENT}\n# u70 did not\n[[legal_holds]]\ntenant = "acme"\n'
        'pseudonym = "u_3f9c0a17d2b4e6f8a1c5"\n')
