"""The offline bundle: verify, install with the network cut, selftest, replay; refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import write_stream

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted((REPO / ".bundle").glob("semtrace-bundle-*-linux-x86_64.tar.gz"))
pytestmark = pytest.mark.slow


def _offline(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run with the network namespace cut where the kernel allows it."""
    cut = shutil.which("unshare") and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0
    return subprocess.run((["unshare", "-n"] if cut else []) + cmd, capture_output=True,
                          text=True, timeout=1800, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUNDLES:
        if os.environ.get("CI"):
            pytest.fail("no bundle in .bundle/: `make test` builds it before the tests")
        pytest.skip("no bundle built (run `make bundle`)")
    out = tmp_path_factory.mktemp("bundle")
    with tarfile.open(BUNDLES[-1]) as tar:
        tar.extractall(out, filter="data")
    return next(out.iterdir())


@pytest.fixture(scope="module")
def installed(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text("bundle test passphrase\n")
    # The host's pip settings: a site's pip.conf (here one named by PIP_CONFIG_FILE) and
    # PIP_* variables pinning numpy below the bundle's failed the install with pip's
    # ResolutionImpossible; the bundle installs what it holds whatever pip is told there.
    (tmp / "pin.txt").write_text("numpy<2\n")
    (tmp / "pip.conf").write_text(f"[global]\nconstraint = {tmp / 'pin.txt'}\n"
                                  "index-url = https://pypi.example.invalid/simple\n")
    r = _offline(["bash", str(bundle / "install.sh"), "--prefix", str(tmp / "venv"),
                  "--data-dir", str(tmp / "data"), "--no-service", "--passphrase-file", str(pw)],
                 # a shell whose PYTHONPATH holds a source tree: pip took it as installed
                 env={**os.environ, "PIP_CONFIG_FILE": str(tmp / "pip.conf"),
                      "PIP_CONSTRAINT": str(tmp / "pin.txt"), "PIP_NO_BINARY": ":all:",
                      "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checksums verified" in r.stdout
    return tmp


def test_bundle_size_is_reported_and_within_target() -> None:
    if not BUNDLES:
        pytest.skip("no bundle built")
    assert BUNDLES[-1].stat().st_size < 250 * 1024 * 1024


def test_installed_bundle_passes_selftest_and_replays_offline(installed: Path,
                                                               tmp_path: Path) -> None:
    exe = str(installed / "venv" / "bin" / "semtrace")
    st = _offline([exe, "selftest", "--json"])
    assert st.returncode == 0, st.stdout + st.stderr
    assert json.loads(st.stdout)["ok"] is True
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:00:00Z", "text": "Weather in Rome?"},
        {"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:01:00Z", "text": "And tomorrow?"}])
    out = tmp_path / "out.jsonl"
    rp = _offline([exe, "replay", str(src), "--out", str(out), "--data-dir",
                   str(installed / "data"), "--passphrase-file", str(installed / "pw")])
    assert rp.returncode == 0, rp.stderr
    assert len(out.read_text().splitlines()) == 2
    doc = _offline([exe, "doctor", "--data-dir", str(installed / "data"), "--json"])
    assert json.loads(doc.stdout)["problems"] == [], doc.stdout


def test_the_bundle_carries_the_extras_a_host_cannot_fetch_later(installed: Path) -> None:
    """docs/otel.md's OTLP export and docs/scale-out.md's NATS on an air-gapped host."""
    py = str(installed / "venv" / "bin" / "python")
    r = _offline([py, "-c", "import opentelemetry.exporter.otlp.proto.http.trace_exporter, nats"])
    assert r.returncode == 0, r.stderr


def test_a_corrupted_file_stops_install_before_anything(bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    wheel = next((broken / "wheels").glob("semtrace-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[1000] ^= 0xFF
    wheel.write_bytes(bytes(data))
    r = _offline(["bash", str(broken / "install.sh"), "--prefix", str(tmp_path / "venv"),
                  "--data-dir", str(tmp_path / "data"), "--no-service"])
    assert r.returncode != 0 and "checksum mismatch" in r.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "data").exists()


def test_a_downgrade_is_refused(bundle: Path, installed: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    (old / "VERSION").write_text("0.0.1\n")
    subprocess.run("find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort | xargs sha256sum "
                   "> SHA256SUMS", shell=True, cwd=old, check=True)
    r = _offline(["bash", str(old / "install.sh"), "--prefix", str(installed / "venv"),
                  "--data-dir", str(installed / "data"), "--no-service"])
    assert r.returncode != 0 and "Downgrades are refused" in r.stderr


def _newer_build_of_the_same_version(bundle: Path, out: Path) -> Path:
    """A copy of the bundle whose semtrace wheel holds one more module (listed in its
    RECORD), its lock and checksums redone: newer code under the same version number."""
    new = out / bundle.name
    shutil.copytree(bundle, new)
    wheel = next((new / "wheels").glob("semtrace-*.whl"))
    body = b"BUILD = 'newer'\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    rebuilt = out / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                dst.writestr("appliance/_bundle_build.py", body)
                data += f"appliance/_bundle_build.py,sha256={digest},{len(body)}\n".encode()
            dst.writestr(item, data)
    rebuilt.replace(wheel)
    lock = new / "requirements.lock"
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock.write_text("".join(
        line.split(" --hash=")[0] + f" --hash=sha256:{sha}\n" if line.startswith("semtrace==")
        else line + "\n" for line in lock.read_text().splitlines()))
    subprocess.run("find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort | xargs sha256sum "
                   "> SHA256SUMS", shell=True, cwd=new, check=True)
    return new


def test_an_upgrade_to_a_newer_build_of_the_same_version_installs_its_code(
        bundle: Path, installed: Path, tmp_path: Path) -> None:
    """pip keeps an installed distribution of the version a lock names: install.sh said
    'upgrading 0.1.0 -> 0.1.0' and left the old code in place (the data dir is kept)."""
    new = _newer_build_of_the_same_version(bundle, tmp_path)
    r = _offline(["bash", str(new / "install.sh"), "--prefix", str(installed / "venv"),
                  "--data-dir", str(installed / "data"), "--no-service"],
                 env={**os.environ, "PIP_CONFIG_FILE": "/dev/null"})
    assert r.returncode == 0, r.stdout + r.stderr
    version = (bundle / "VERSION").read_text().strip()
    assert f"upgrading {version} -> {version}" in r.stdout
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the venv's code only
    probe = _offline([str(installed / "venv" / "bin" / "python"), "-c",
                      "from appliance._bundle_build import BUILD; print(BUILD)"],
                     cwd=tmp_path, env=clean)
    assert probe.stdout.strip() == "newer", probe.stderr
    doc = _offline([str(installed / "venv" / "bin" / "semtrace"), "doctor", "--data-dir",
                    str(installed / "data"), "--passphrase-file", str(installed / "pw"), "--json"])
    assert json.loads(doc.stdout)["problems"] == [], doc.stdout


def test_dry_run_changes_nothing(bundle: Path, tmp_path: Path) -> None:
    r = _offline(["bash", str(bundle / "install.sh"), "--prefix", str(tmp_path / "venv"),
                  "--data-dir", str(tmp_path / "data"), "--no-service", "--dry-run"])
    assert r.returncode == 0 and "would run" in r.stdout
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd is not present")
def test_systemd_unit_verifies(installed: Path, tmp_path: Path) -> None:
    unit = tmp_path / "semtrace.service"
    text = (REPO / "installer" / "semtrace.service").read_text()
    unit.write_text(text.replace("/opt/semtrace", str(installed / "venv")))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if "semtrace.service" in line and "Unknown user" not in line
                and "semtrace" in line.split(":")[0]]
    assert r.returncode == 0 or not problems, r.stdout + r.stderr
