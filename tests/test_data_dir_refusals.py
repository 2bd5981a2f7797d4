"""Every command that opens a data dir refuses a missing one, a folder that is not a data
dir, and a file, the same way: one sentence naming it, exit 2 (bad input), nothing made."""

from __future__ import annotations

from pathlib import Path

import pytest

# Each command with the arguments it needs besides --data-dir; files are made by `paths`.
COMMANDS: dict[str, list[str]] = {
    "audit log": ["audit", "log"],
    "audit public-key": ["audit", "public-key"],
    "audit retention": ["audit", "retention"],
    "audit verify": ["audit", "verify"],
    "backup": ["backup", "{tmp}/copy"],
    "cluster export": ["cluster", "export", "--partitions", "0", "--of", "4", "--out",
                       "{tmp}/part.bin"],
    "cluster forget": ["cluster", "forget", "--partitions", "0", "--of", "4", "--yes"],
    "cluster import": ["cluster", "import", "{tmp}/report.json"],
    "cluster reclaim": ["cluster", "reclaim", "--partitions", "0", "--of", "4"],
    "compliance enroll": ["compliance", "enroll", "--compliance-passphrase-file", "{tmp}/cpw"],
    "compliance retag": ["compliance", "retag", "--compliance-passphrase-file", "{tmp}/cpw"],
    "erase": ["erase", "--tenant", "acme", "--user", "u1", "--reason", "T-1"],
    "keys rotate": ["keys", "rotate", "--new-passphrase-file", "{tmp}/cpw"],
    "reembed": ["reembed"],
    "retention run": ["retention", "run"],
    "reveal": ["reveal", "1", "--role", "compliance", "--reason", "T-1",
               "--compliance-passphrase-file", "{tmp}/cpw"],
    "search": ["search", "hello"],
    "serve": ["serve"],
    "serve --check": ["serve", "--check"],
    "stats topics": ["stats", "topics", "--tenant", "acme"],
    "stats models": ["stats", "models", "--tenant", "acme"],
    "stats cost": ["stats", "cost", "--tenant", "acme"],
    "stats positions": ["stats", "positions", "--tenant", "acme"],
    "stats blocks": ["stats", "blocks", "--tenant", "acme"],
    "stats incident": ["stats", "incident", "--tenant", "acme"],
    "threads list": ["threads", "list"],
    "threads show": ["threads", "show", "th_0123456789abcdef"],
    "thresholds": ["thresholds"],
    "tui": ["tui"],
}


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    pw = tmp_path / "pw"
    pw.write_text("a passphrase for the check\n")
    pw.chmod(0o600)
    cpw = tmp_path / "cpw"
    cpw.write_text("another compliance phrase\n")
    cpw.chmod(0o600)
    (tmp_path / "report.json").write_text("{}")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a data dir")
    return {"pw": pw, "missing": tmp_path / "nowhere", "folder": folder,
            "file": tmp_path / "report.json"}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    return _run_out(argv, capsys)[::2]


def _run_out(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from appliance.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_missing_or_foreign_data_dir_is_refused_as_bad_input(
        name: str, paths: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(tmp=tmp_path) for a in COMMANDS[name]]
    for kind, words in (("missing", "does not exist"), ("folder", "is not a Semtrace data dir"),
                        ("file", "is a file, not a folder")):
        target = paths[kind]
        code, err = _run([*args, "--data-dir", str(target), "--passphrase-file",
                          str(paths["pw"])], capsys)
        assert code == 2, (name, kind, err)
        assert err.startswith("semtrace: ") and len(err.strip().splitlines()) == 1, err
        assert str(target) in err and words in err, (name, kind, err)
    assert not paths["missing"].exists()
    assert sorted(p.name for p in paths["folder"].iterdir()) == ["notes.txt"]
    assert not (tmp_path / "copy").exists() and not (tmp_path / "part.bin").exists()


def test_doctor_names_a_data_dir_that_is_a_file_as_a_problem(
        paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, err = _run_out(["doctor", "--json", "--data-dir", str(paths["file"])], capsys)
    assert code == 1 and err == "", err  # doctor: problems found, listed in its report
    assert f"The data dir {paths['file']} is a file, not a folder." in \
        json.loads(out)["problems"]


def test_init_under_a_file_says_which_data_dir_cannot_be_made(
        paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `semtrace: Not a directory: …/file/semtrace.` (exit 1), the OS's words
    without saying what was being made."""
    target = paths["file"] / "semtrace"
    code, err = _run(["init", "--data-dir", str(target), "--passphrase-file",
                      str(paths["pw"])], capsys)
    assert code == 2 and err.strip() == (f"semtrace: The data dir {target} cannot be created "
                                         "(not a directory); nothing was written."), err
    assert paths["file"].is_file()
