"""A cluster command whose NATS server cannot serve it ends in one sentence, never in a
traceback: a real nats-server without JetStream, and one whose user may not use the
JetStream API (its requests go unanswered)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from test_cluster import nats_server
from test_spine import run_cli


def _policies(tmp: Path, url: str, security: str) -> dict[str, str]:
    import os

    from appliance.config import policy_dir

    policies = tmp / "policies"
    shutil.copytree(policy_dir(), policies)
    (policies / "cluster.toml").write_text(
        f'url = "{url}"\npartitions = 4\n[security]\nplain_bus = true\n{security}')
    return {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)}


def _one_sentence(out: subprocess.CompletedProcess[str], start: str) -> None:
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and not out.stdout
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"semtrace: {start}"), out.stderr
    assert out.stderr.rstrip().endswith("The command stopped there.")


def test_cluster_status_on_a_nats_server_without_jetstream_says_so(tmp_path: Path) -> None:
    with nats_server(tmp_path / "nats", jetstream=False) as url:
        env = _policies(tmp_path, url, "")
        for extra in ((), ("--json",), ("--tenant", "acme")):
            out = run_cli("cluster", "status", *extra, env=env)
            _one_sentence(out, "The NATS server did not answer its JetStream API "
                               "(ServiceUnavailableError): is JetStream enabled there")


def test_cluster_status_for_a_nats_user_denied_the_jetstream_api_says_so(
        tmp_path: Path) -> None:
    password = tmp_path / "node.password"
    password.write_text("n4rrow-s3cret\n")
    password.chmod(0o600)
    auth = ('authorization { users = [ { user: narrow, password: "n4rrow-s3cret", '
            'permissions: { publish: { allow: ["semtrace.>", "_INBOX.>"] }, '
            'subscribe: { allow: ["_INBOX.>"] } } } ] }\n')
    with nats_server(tmp_path / "nats", auth) as url:
        env = _policies(tmp_path, url, f'user = "narrow"\npassword_file = "{password}"\n')
        out = run_cli("cluster", "status", env=env)
    _one_sentence(out, "NATS did not answer in time (TimeoutError): the server is overloaded "
                       "or gone, or this NATS user may not publish to a subject the command "
                       "needs")
