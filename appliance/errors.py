"""User-facing errors: one clear sentence each, never a secret or prompt text."""


class SemtraceError(Exception):
    """An error whose message is safe to show a user as is."""

    exit_code = 1


class WrongKey(SemtraceError):
    """The passphrase or key file does not open this data dir."""

    exit_code = 2


class DamagedFile(SemtraceError):
    """A file of the data dir (keyring.json, reveal-key.json, reveal.pub, rotation.json)
    cannot be read as Semtrace wrote it: restored from a backup, or the data dir named is
    not the right one (exit 2, as a damaged database file is)."""

    exit_code = 2


class ConfigError(SemtraceError):
    """A policy or setting is invalid."""

    exit_code = 2


class ModelError(SemtraceError):
    """The bundled embedding model is missing or altered."""

    exit_code = 3


class InputError(SemtraceError):
    """A line of input is invalid."""

    exit_code = 2


class AccessDenied(SemtraceError):
    """The caller's role or credential does not allow this."""

    exit_code = 4


class NoComplianceKey(SemtraceError):
    """No compliance key is enrolled: no originals are kept to reveal (exit 1, as for
    nothing else to reveal; `reveal_denied`'s `why` names it in the audit log)."""
