"""`--role ""` is refused on every command that takes --role, as the query socket refuses
`"role": ""`: before, the local path took it for the default role (`role or default`), so
a script whose role variable was unset acted under another role than it named."""

from __future__ import annotations

from pathlib import Path

import click
import pytest


def _commands_with_role() -> list[tuple[list[str], bool, str]]:
    """Each command with --role: its words, whether it has --json, its default role."""
    from appliance.cli import cli

    found: list[tuple[list[str], bool, str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, [*path, name])
        elif (role := next((p for p in cmd.params if p.name == "role"), None)) is not None:
            named = "(default: compliance)" in (getattr(role, "help", None) or "")
            found.append((path, any(p.name == "as_json" for p in cmd.params),
                          "the compliance role" if named else "access.toml's default role"))

    walk(cli, [])
    return found


COMMANDS = _commands_with_role()


def test_the_commands_that_take_a_role_are_all_checked() -> None:
    names = {" ".join(c) for c, _, _ in COMMANDS}
    assert {"threads list", "search", "reveal", "erase", "stats topics", "tui",
            "audit log", "thresholds"} <= names and len(names) >= 18


@pytest.mark.parametrize(("command", "has_json", "default"), COMMANDS,
                         ids=[" ".join(c) for c, _, _ in COMMANDS])
@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_role_is_one_sentence_and_nothing_is_done(
        command: list[str], has_json: bool, default: str, blank: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Also with --json: the refusal is the same sentence on stderr, nothing on stdout."""
    from appliance.cli import main

    data_dir = tmp_path / "store"  # never made: the refusal comes before anything is opened
    json = ["--json"] if has_json else []
    with pytest.raises(SystemExit) as exc:
        main([*command, "--role", blank, *json, "--data-dir", str(data_dir)])
    out = capsys.readouterr()
    assert exc.value.code == 2 and out.out == "" and not data_dir.exists()
    assert out.err == f"semtrace: --role must not be blank; leave it out to act under {default}.\n"
