"""`semtrace COMMAND --help` says what each option does: a new engineer reads the options
there before the README (`semtrace search --help` listed `-k, --limit INTEGER RANGE` and
`doctor --help` `--data-dir PATH`, `--json`, with nothing after them)."""

from __future__ import annotations

import click


def _commands(cmd: click.Command, path: str) -> list[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        return [c for name, sub in cmd.commands.items()
                for c in _commands(sub, f"{path} {name}")]
    return [(path, cmd)]


def test_every_option_of_every_command_says_what_it_does() -> None:
    from appliance.cli import cli

    unsaid = [f"{path} {param.opts[-1]}" for path, cmd in _commands(cli, "semtrace")
              for param in cmd.params
              if isinstance(param, click.Option) and not param.hidden
              and not (param.help or "").strip()]
    assert unsaid == [], unsaid
