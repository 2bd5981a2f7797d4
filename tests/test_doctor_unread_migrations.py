"""doctor without a credential names the service's passphrase file only where one is."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_spine import run_cli


def test_doctor_without_a_credential_names_no_service_passphrase_where_none_is_installed(
        tmp_path: Path, passphrase_file: Path) -> None:
    """From a source checkout (no install record) it told the operator to use
    /etc/semtrace/passphrase, a file this host does not have."""
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    out = run_cli("doctor", "--data-dir", str(data),
                  env={"SEMTRACE_PASSPHRASE_FILE": ""})
    said = [line for line in out.stdout.splitlines() if "cannot be read without" in line]
    assert len(said) == 1, out.stdout
    assert "/etc/semtrace/passphrase" not in said[0] and "service" not in said[0]
    assert said[0].endswith("--passphrase-file FILE` (or --key-file) to list them.")


def test_on_a_service_host_it_names_the_recorded_passphrase(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.cli import install

    monkeypatch.setattr(install, "installed_service",
                        lambda: {"passphrase_file": Path("/etc/st/passphrase")})
    said = install._unread_migrations(tmp_path)
    assert "this install's service's passphrase is /etc/st/passphrase, readable by root" \
        in said
