"""install.sh --public-key on a stand-in bundle signed as build-bundle.sh --sign-key signs
(Ed25519 over SHA256SUMS, OpenSSL 3's pkeyutl -rawin): a bundle signed by the key verifies,
one signed by another key or altered does not, and a host whose openssl cannot verify
Ed25519 (none, or OpenSSL 1.1 as on RHEL 8) is told so instead of hearing that the bundle
does not verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from installer_host import SYSTEM_PYTHON, stand_in_bundle

NOT_VERIFIED = "install: the bundle's signature does not verify; nothing was installed."


def _key(tmp: Path, name: str) -> tuple[Path, Path]:
    key, pub = tmp / f"{name}.pem", tmp / f"{name}.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True)
    return key, pub


def _signed_bundle(tmp: Path, key: Path) -> Path:
    bundle = stand_in_bundle(tmp)
    subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in",
                    str(bundle / "SHA256SUMS"), "-out", str(bundle / "SHA256SUMS.sig")],
                   check=True, capture_output=True)  # as installer/build-bundle.sh signs
    return bundle


def _install(bundle: Path, tmp: Path, pub: Path,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(tmp / "venv"),
                           "--data-dir", str(tmp / "data"), "--no-service", "--dry-run",
                           "--python", SYSTEM_PYTHON or sys.executable, "--public-key",
                           str(pub)], capture_output=True, text=True, env=env, timeout=120)


needs_openssl3 = pytest.mark.skipif(
    not subprocess.run(["openssl", "version"], capture_output=True, text=True)
    .stdout.startswith("OpenSSL 3"), reason="signing the stand-in bundle needs OpenSSL 3")


@needs_openssl3
def test_a_bundle_signed_by_the_key_verifies_and_another_or_altered_does_not(
        tmp_path: Path) -> None:
    key, pub = _key(tmp_path, "release")
    _, other = _key(tmp_path, "other")
    bundle = _signed_bundle(tmp_path, key)
    r = _install(bundle, tmp_path, pub)
    assert r.returncode == 0, r.stderr
    assert "install: signature verified." in r.stdout.splitlines()
    r = _install(bundle, tmp_path, other)
    assert (r.returncode, r.stderr.strip()) == (1, NOT_VERIFIED)
    sig = bundle / "SHA256SUMS.sig"
    sig.write_bytes(bytes([sig.read_bytes()[0] ^ 1]) + sig.read_bytes()[1:])
    r = _install(bundle, tmp_path, pub)
    assert (r.returncode, r.stderr.strip()) == (1, NOT_VERIFIED)
    assert "would run" not in r.stdout and not (tmp_path / "venv").exists()


@needs_openssl3
@pytest.mark.parametrize("host", ["openssl 1.1", "no openssl"])
def test_a_host_whose_openssl_cannot_verify_ed25519_is_told_so(tmp_path: Path,
                                                               host: str) -> None:
    """Before, both said 'the bundle's signature does not verify', as for a tampered one."""
    key, pub = _key(tmp_path, "release")
    bundle = _signed_bundle(tmp_path, key)
    tools = tmp_path / "tools"
    tools.mkdir()
    for d in ("/usr/bin", "/bin"):  # this host's commands, openssl left out
        for exe in Path(d).iterdir():
            if exe.name != "openssl" and not (tools / exe.name).exists():
                (tools / exe.name).symlink_to(exe)
    if host == "openssl 1.1":
        (tools / "openssl").write_text(
            "#!/bin/sh\n[ \"$1\" = version ] && echo 'OpenSSL 1.1.1k  FIPS 25 Mar 2021' "
            "&& exit 0\necho 'pkeyutl: Unknown option: -rawin' >&2\nexit 1\n")
        (tools / "openssl").chmod(0o755)
    r = _install(bundle, tmp_path, pub, env={**os.environ, "PATH": str(tools)})
    found = "1.1.1k" if host == "openssl 1.1" else "no openssl"
    assert (r.returncode, r.stderr.strip()) == (1, (
        "install: --public-key needs OpenSSL 3 or newer to verify the bundle's Ed25519 "
        f"signature (this host has {found}); verify SHA256SUMS.sig on a host that has it, "
        "or leave out --public-key; nothing was installed."))
    assert "would run" not in r.stdout
