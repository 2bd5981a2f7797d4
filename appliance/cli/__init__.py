"""The `semtrace` command: click groups by noun; parse, call the library, print.

Every command that prints data has `--json`. User errors are one sentence on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.constants import DATA_DIR_ENV
from appliance.coredump import forbid_core_dumps
from appliance.errors import InputError, SemtraceError

if TYPE_CHECKING:
    from rich.progress import Progress

    from appliance.cli.progress import LineProgress
    from appliance.keys import Credential
    from appliance.runtime import Runtime

# Every module imported here, and every command module's top, stays light (click and the
# standard library): `semtrace --help`, and every command, build all commands first. What
# a command needs (NumPy, SQLCipher, Presidio, OpenDP, the model) it imports when it runs
# (tests/test_cli_start.py).


def not_blank(**options: str | None) -> None:
    """An option given as an empty string is bad input, not 'every tenant' (a script's
    unset variable)."""
    from appliance.errors import InputError

    for name, value in options.items():
        if value is not None and not value.strip():
            raise InputError(f"--{name} must not be blank.")


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that refuses 'nan' (click lets it through every bound: a NaN compares
    false with both) as it refuses a number out of range."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:  # NaN
            self.fail(f"{value!r} is not a number; give one in the range {self._describe_range()}.",
                      param, ctx)
        return number


def emit_json(obj: Any) -> None:
    from appliance.records import jsonable

    click.echo(json.dumps(jsonable(obj), ensure_ascii=False, indent=1))


def data_dir_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--data-dir", type=click.Path(path_type=Path, readable=False),
                        envvar=DATA_DIR_ENV,
                        default=None, help="Data directory (default $SEMTRACE_DATA_DIR, then "
                        "~/.local/share/semtrace).")(fn)


def credential_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--key-file", type=click.Path(path_type=Path), default=None,
                      help="Raw 32-byte master key file (mode 0600).")(fn)
    fn = click.option("--passphrase-file", type=click.Path(path_type=Path), default=None,
                      help="File holding the passphrase (or $SEMTRACE_PASSPHRASE_FILE).")(fn)
    return fn


def _named_role(default: str) -> Callable[[click.Context, click.Parameter, str | None],
                                          str | None]:
    """`--role`'s check: an empty role is refused, not taken for `default` (a script's
    unset variable must not act under another role; the query socket refuses it too)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise InputError(f"--role must not be blank; leave it out to act under {default}.")
        return value
    return check


def role_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--role", default=None, metavar="ROLE",
                        callback=_named_role("access.toml's default role"),
                        help="Role of access.toml to act under (default: its default role); "
                        "a role bound to uids/gids is refused to anyone else.")(fn)


def role_option_as(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--role` of a command that acts as `default` when none is given (its help says so)."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return click.option("--role", default=None, metavar="ROLE",
                            callback=_named_role(f"the {default} role"),
                            help=f"Role of access.toml to act under (default: {default}); a "
                            "role bound to uids/gids is refused to anyone else.")(fn)
    return decorate


def credential(passphrase_file: Path | None, key_file: Path | None) -> Credential:
    if passphrase_file is not None and key_file is not None:
        raise InputError("Give --passphrase-file or --key-file, not both.")
    from appliance.keys import find_credential

    return find_credential(passphrase_file=passphrase_file, key_file=key_file)


def output_path(path: Path, option: str = "--out", *, source: Path | None = None) -> Path:
    """Refuse an output file whose folder is missing, or that is the input itself, before
    any work is done."""
    if source is not None and path.exists() and path.samefile(source):
        raise InputError(f"{option} {path} is the input file; writing it would replace the "
                         "input. Choose another file.")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"The folder of {option} {path} does not exist.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"The folder of {option} {path} is not writable.")
    return path


def progress_bar() -> Progress | LineProgress:
    """Progress on stderr (never on stdout, which may carry --json): a bar on a terminal,
    otherwise a plain line now and then (`cli/progress.py`), for scripts and units."""
    from rich.console import Console
    from rich.progress import Progress

    from appliance.cli.progress import LineProgress

    if not sys.stderr.isatty():
        return LineProgress()
    return Progress(console=Console(stderr=True), transient=True)


def open_dir(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None, *,
             readonly: bool = False) -> Runtime:
    """Open the data dir named on the command line."""
    from appliance.runtime import default_data_dir, is_initialised, open_runtime

    directory = data_dir or default_data_dir()

    if not is_initialised(directory):
        return open_runtime(directory, None)  # raises the right sentence
    rt = open_runtime(directory, credential(passphrase_file, key_file), readonly=readonly)
    note = rt.migration_note()
    if note:  # on stderr: stdout may carry --json
        click.echo(f"semtrace: {note}", err=True)
    return rt


def open_read(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
              command: str) -> Runtime:
    """Open, read-only, the data dir a command that only reads the store reads: the one
    given, else the caller's own store, else on a service host the service's, said on
    stderr (`check_target.read_target`: the checks' rule). `command` names it in the
    sentence for a data dir this user cannot read."""
    from appliance.cli.check_target import read_target

    return open_dir(read_target(data_dir, command).path, passphrase_file, key_file,
                    readonly=True)


class StdoutClosed(Exception):
    """The reader of stdout went away (`| head -1`): not an OSError, so that click, which
    ends an EPIPE with exit code 1 and no word, lets it reach `main`."""


class _Group(click.Group):
    """The root group: a write to a closed stdout, from any command, ends it quietly."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # `semtrace --help | head -1` writes while parsing
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            raise StdoutClosed from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise StdoutClosed from None


def _quiet_closed_stdout() -> None:
    """Point fd 1 at /dev/null: what is still buffered for the closed pipe is flushed
    there at exit instead of raising again (Python's own advice for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (a test's capture)
        pass
    finally:
        os.close(devnull)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="semtrace")
def cli() -> None:
    """Semtrace: finds conversation threads in AI traffic from the prompts themselves."""


@cli.command()
@data_dir_option
@credential_options
@click.option("--new-key-file", type=click.Path(path_type=Path), default=None,
              help="Create a new random key file (mode 0600) and use it.")
@click.option("--compliance-passphrase-file", type=click.Path(path_type=Path), default=None,
              help="Also enroll the compliance credential (originals kept in the vault).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
         new_key_file: Path | None, compliance_passphrase_file: Path | None,
         as_json: bool) -> None:
    """Create an encrypted store in a new or empty data dir."""
    from appliance.keys import read_key_file, write_key_file
    from appliance.runtime import (
        check_new_data_dir,
        default_data_dir,
        init_data_dir,
        is_initialised,
    )

    directory = data_dir or default_data_dir()
    check_new_data_dir(directory)  # before a new key file is written
    compliance = None
    if compliance_passphrase_file is not None:
        from appliance.keys import read_passphrase_file

        compliance = read_passphrase_file(compliance_passphrase_file)
    if new_key_file is None:
        init_data_dir(directory, credential(passphrase_file, key_file), compliance=compliance)
    else:
        if passphrase_file is not None or key_file is not None:
            raise InputError("Give --new-key-file alone, without --passphrase-file or "
                             "--key-file.")
        if new_key_file.exists():
            raise InputError(f"{new_key_file} already exists; it was not overwritten: give "
                             "--new-key-file a new file (or that key as --key-file).")
        write_key_file(new_key_file)
        try:
            init_data_dir(directory, read_key_file(new_key_file), compliance=compliance)
        except BaseException:
            if not is_initialised(directory):  # the key opens nothing: leave no stray key
                new_key_file.unlink(missing_ok=True)
            raise
    if as_json:
        emit_json({"data_dir": str(directory), "initialised": True})
    else:
        click.echo(f"Initialised an encrypted store in {directory}.")


# Each module owns one noun and lists its click commands in COMMANDS.
COMMAND_MODULES = ("model", "replay", "browse", "demo", "reembed", "eval", "redact", "service",
                   "compliance", "subject_access", "audit", "erasure", "retention", "keys",
                   "stats", "tui", "install", "cluster", "thresholds", "backup")


def _register_subcommands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"appliance.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"appliance.cli.{name}":
                continue
            raise
        for command in module.COMMANDS:
            cli.add_command(command)


_register_subcommands()


def _damaged_store(exc: Exception) -> bool:
    """SQLCipher's plain DatabaseError (not a subclass): a page fails its integrity check."""
    import sqlcipher3

    return type(exc) is sqlcipher3.DatabaseError


def _database_error(exc: Exception) -> bool:
    """Any other SQLCipher error reaching the top (an emptied file, a lock held too long)."""
    import sqlcipher3

    return isinstance(exc, sqlcipher3.DatabaseError)


def not_utf8(args: list[str]) -> int | None:
    """The position (from 1) of the first argument that did not arrive as UTF-8 (a Latin-1
    terminal or script: Python keeps its bytes as lone surrogates, which every later
    encode, pseudonym or embedding, failed on with a traceback)."""
    for i, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None


def _nats_failure(exc: Exception) -> str | None:
    """One sentence for a NATS error no command turned into its own (None: not NATS's):
    its type only, as the server's text may name subjects, hence tenants."""
    if not type(exc).__module__.startswith("nats."):
        return None
    kind = type(exc).__name__
    if kind in ("ServiceUnavailableError", "NoRespondersError"):
        return (f"The NATS server did not answer its JetStream API ({kind}): is JetStream "
                "enabled there, and may this NATS user publish to $JS.API.>? The command "
                "stopped there.")
    if kind == "TimeoutError":
        return ("NATS did not answer in time (TimeoutError): the server is overloaded or "
                "gone, or this NATS user may not publish to a subject the command needs (the "
                "permissions in docs/scale-out.md). The command stopped there.")
    return f"NATS failed while this command ran ({kind}). The command stopped there."


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one sentence and an exit code."""
    forbid_core_dumps()
    bad = not_utf8(sys.argv[1:] if argv is None else argv)
    if bad is not None:  # never echoed: it may be a user id or a search for a prompt
        click.echo(f"semtrace: argument {bad} is not UTF-8 text (set the terminal or the "
                   "script to UTF-8); nothing was done.", err=True)
        sys.exit(2)
    try:
        cli.main(args=argv, prog_name="semtrace", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("semtrace: interrupted.", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group alone: its help
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one sentence, like every other refusal
        where = exc.ctx.command_path if exc.ctx is not None else "semtrace"
        message = exc.format_message().rstrip(".")
        click.echo(f"semtrace: {message} (see `{where} --help`).", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SemtraceError as exc:
        click.echo(f"semtrace: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("semtrace: interrupted.", err=True)
        sys.exit(130)
    except (StdoutClosed, BrokenPipeError):  # `| head -1`: the reader has all it wants
        _quiet_closed_stdout()
        sys.exit(0)
    except OSError as exc:  # a file the command had to read or write; never a traceback
        if (said := _nats_failure(exc)) is not None:  # nats-py's TimeoutError is an OSError
            click.echo(f"semtrace: {said}", err=True)
            sys.exit(1)
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"semtrace: {exc.strerror or type(exc).__name__}{where}.", err=True)
        sys.exit(1)
    except OverflowError:  # a date such as --to 0001-01-01 moved back by the default week
        click.echo("semtrace: A date given is out of range (too near year 1 or 9999); "
                   "nothing was done.", err=True)
        sys.exit(2)
    except Exception as exc:  # last: every clause above is an Exception too
        if (said := _nats_failure(exc)) is not None:
            click.echo(f"semtrace: {said}", err=True)
            sys.exit(1)
        if _damaged_store(exc):
            click.echo("semtrace: The store cannot be read: a database file is damaged "
                       "(restore it from a backup); nothing was changed.", err=True)
            sys.exit(2)
        if _database_error(exc):
            click.echo(f"semtrace: The store could not be read ({exc}); a file of the data "
                       "dir may be damaged or truncated.", err=True)
            sys.exit(1)
        raise
