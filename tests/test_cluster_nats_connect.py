"""Connecting to NATS, as an operator or a gateway gets it wrong: a URL nats-py cannot use,
credentials the server refuses, TLS asked of a server without it. Each ends in one sentence
that names what is wrong, never a password; a real nats-server (test_cluster's fixture),
with TLS from a CA made here for the test that needs it."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cluster import nats_server
from test_spine import run_cli

from appliance.errors import ConfigError, SemtraceError

PASSWORD = "s3cret-h185-canary"


def _env(tmp: Path, url: str, security: str = "") -> dict[str, str]:
    from appliance.config import policy_dir

    policies = tmp / "policies"
    shutil.copytree(policy_dir(), policies, dirs_exist_ok=True)
    (policies / "cluster.toml").write_text(
        f'url = "{url}"\npartitions = 4\n[security]\nplain_bus = true\n{security}')
    return {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)}


def _one_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and not out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_a_nats_url_with_a_port_out_of_range_says_so_not_that_credentials_were_refused(
        tmp_path: Path) -> None:
    from appliance.cluster.client import NatsClient

    for bad in ("nats://127.0.0.1:99999", "nats://127.0.0.1:port", "http://127.0.0.1:4222",
                "TLS://127.0.0.1:4222"):  # nats-py reads no scheme in capitals
        said = _one_line(run_cli("cluster", "status", "--nats", bad, env=_env(tmp_path, "")), 2)
        assert "must be nats://host:port (or tls://) with a port from 1 to 65535" in said, said
        with pytest.raises(ConfigError) as gateway:
            NatsClient(bad, timeout=3, plain_bus=True)
        assert str(gateway.value) == (
            f"The NATS URL {bad} must be nats://host:port (or tls://) with a port from 1 to "
            "65535, comma-separated."), gateway.value
    # in cluster.toml, where `serve` reads it, the same sentence names the file and key
    said = _one_line(run_cli("cluster", "status", env=_env(tmp_path, "nats://127.0.0.1:99999")),
                     2)
    assert "cluster.toml" in said and "with a port from 1 to 65535" in said, said


def test_a_gateway_whose_credentials_are_refused_says_so_without_the_password(
        tmp_path: Path) -> None:
    """A gateway's client reconnects: nats-py retried the refused credentials until the
    timeout, and the gateway was told that no server answers, the URL's password quoted."""
    from appliance.cluster.client import NatsClient

    auth = f'authorization {{ user: gw, password: "right-{PASSWORD}" }}\n'
    with nats_server(tmp_path / "nats", auth) as url:
        wrong = url.replace("nats://", f"nats://gw:{PASSWORD}@")
        for given in (wrong, url):  # a wrong password in the URL, and none at all
            with pytest.raises(SemtraceError) as refused:
                NatsClient(given, timeout=20, plain_bus=True)
            assert str(refused.value) == (
                f"The NATS server at {url} refused these credentials (authorization "
                "violation); check [security] in cluster.toml."), refused.value
            assert PASSWORD not in str(refused.value)


class Recorder:
    """A TCP relay in front of nats-server that keeps every byte the client sent."""

    def __init__(self, url: str) -> None:
        self.target = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.sent = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"nats://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self._listener.close()


def _ca_and_server(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1 with its key: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def made(subject: str, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey | None,
             ca: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer or key, hashes.SHA256()), key

    ca_cert, ca_key = made("h185 test CA", None, None, True)
    cert, key = made("127.0.0.1", ca_cert.subject, ca_key, False)
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


@contextmanager
def _recorded(url: str) -> Iterator[Recorder]:
    relay = Recorder(url)
    try:
        yield relay
    finally:
        relay.close()


def test_tls_asked_of_a_server_without_it_is_refused_before_the_password_leaves(
        tmp_path: Path) -> None:
    """`tls_ca_file` (or a tls:// URL) "turns TLS on", but nats-py upgrades only when the
    server requires TLS: to a server without it, it sent the password in clear, and the
    command went on over plain TCP."""
    ca, cert, key = _ca_and_server(tmp_path)
    password = tmp_path / "node.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    auth = f'authorization {{ user: node, password: "{PASSWORD}" }}\n'
    security = f'user = "node"\npassword_file = "{password}"\n'
    with nats_server(tmp_path / "plain", auth) as url, _recorded(url) as relay:
        for env in (_env(tmp_path, relay.url, security + f'tls_ca_file = "{ca}"\n'),
                    _env(tmp_path, relay.url.replace("nats://", "tls://"), security)):
            said = _one_line(run_cli("cluster", "status", env=env), 2)
            assert said.startswith("semtrace: The NATS server at ") and \
                "does not require TLS, which this connection asks for" in said, said
        assert PASSWORD.encode() not in relay.sent
    # a server that requires TLS: the same settings connect, and the password goes encrypted
    tls = f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
    with nats_server(tmp_path / "tls", auth + tls) as url, _recorded(url) as relay:
        out = run_cli("cluster", "status", env=_env(
            tmp_path, relay.url, security + f'tls_ca_file = "{ca}"\n'))
        assert out.returncode == 1, out.stderr  # connected over TLS: no node has started yet
        assert out.stderr.strip() == ("semtrace: The stream SEMTRACE does not exist yet: no "
                                      "node has started with --nats."), out.stderr
        assert relay.sent and PASSWORD.encode() not in relay.sent


def test_a_password_file_without_a_user_is_named_not_sent_as_no_credentials(
        tmp_path: Path) -> None:
    """The password file was ignored without a user, and the server's refusal of a
    connection without credentials read "refused these credentials"."""
    password = tmp_path / "node.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    with nats_server(tmp_path / "nats", 'authorization { user: node, password: "x" }\n') as url:
        env = _env(tmp_path, url, f'password_file = "{password}"\n')
        for command in (("cluster", "status"), ("doctor", "--json")):
            out = run_cli(*command, env=env)
            assert "security.password_file needs security.user in cluster.toml (the NATS "\
                "user the password is for)." in out.stdout + out.stderr, out.stdout + out.stderr
            assert out.returncode != 0 and "Traceback" not in out.stderr
