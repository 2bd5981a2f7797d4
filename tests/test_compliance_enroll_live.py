"""`semtrace compliance enroll` beside the running service: 'new records keep their
originals in the vault' held only once the service restarted, since the store took the
compliance key when it opened. The officer enrolled, a prompt came, and its reveal said the
originals were never kept."""

from __future__ import annotations

from pathlib import Path

from conftest import make_prompt
from test_spine import run_cli


def _vault_rows(runtime) -> int:  # type: ignore[no-untyped-def]
    return int(runtime.store.db.execute("SELECT count(*) FROM vault").fetchone()[0])


def test_a_key_enrolled_while_the_store_is_open_keeps_the_next_prompts_originals(
        pipeline, runtime, data_dir: Path, passphrase_file: Path,  # type: ignore[no-untyped-def]
        tmp_path: Path) -> None:
    from appliance.keys import REVEAL_PUBLIC_FILE

    before = pipeline.process([make_prompt("Mail the deed to ilse.vaultlate@example.com",
                                           user="ilse")])
    other = pipeline.process([make_prompt("Call Jonas Quellbrook about the lease",
                                          user="jonas")])
    assert _vault_rows(runtime) == 0  # no compliance key yet: nothing kept, as documented
    # a reveal.pub planted without the keyring's tag is never sealed to
    (data_dir / REVEAL_PUBLIC_FILE).write_text("A" * 43 + "=\n")
    pipeline.process([make_prompt("Mail the lease to ilse.vaultlate@example.com",
                                  user="ilse", minutes=1)])
    assert _vault_rows(runtime) == 0
    (data_dir / REVEAL_PUBLIC_FILE).unlink()

    officer = tmp_path / "officer"
    officer.touch(mode=0o600)
    officer.write_text("compliance officer secret\n")
    enrolled = run_cli("compliance", "enroll", "--data-dir", str(data_dir), "--passphrase-file",
                       str(passphrase_file), "--compliance-passphrase-file", str(officer))
    assert enrolled.returncode == 0, enrolled.stderr
    after = pipeline.process([make_prompt("And a copy to ilse.vaultlate@example.com",
                                          user="ilse", minutes=2)])
    reason = ["--role", "compliance", "--reason", "ticket 5", "--data-dir", str(data_dir),
              "--passphrase-file", str(passphrase_file), "--compliance-passphrase-file",
              str(officer)]
    shown = run_cli("reveal", str(after[0].record_id), *reason)  # type: ignore[union-attr]
    assert shown.returncode == 0, shown.stderr
    assert "ilse.vaultlate@example.com" in shown.stdout
    # a record stored before the enrolment: its originals were never kept, and the officer
    # is told so, not that they are 'no longer kept' (sent looking for a shred that never
    # happened): one of a day whose later records are kept, and one of a user with none
    for record in (before[0].record_id, other[0].record_id):  # type: ignore[union-attr]
        earlier = run_cli("reveal", str(record), *reason)
        assert earlier.returncode == 1 and "no longer kept" not in earlier.stderr
        assert earlier.stderr.strip() == (
            f"semtrace: The originals of record {record} were never kept: it was stored while "
            "this data dir had no compliance key (originals are kept only from its enrolment "
            "on); nothing was revealed.")
