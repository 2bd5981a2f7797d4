"""A NATS URL may carry a token (`nats://TOKEN@host:port`: nats-py sends a URL's user part
without a password as the server's `authorization { token }`); cluster.toml refuses a
password in the URL but takes a token. Every sentence naming the server shows the URL
without it (config.cluster.shown_url), as the connection's own refusals do. A real
nats-server without JetStream, with token authorisation: `erase` and `doctor` cannot
use it, and say so without the token."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from test_cluster import PARTITIONS, nats_server
from test_spine import run_cli

TOKEN = "tok3n-Canary-7f1c9e"


def _policies(tmp: Path, url: str) -> dict[str, str]:
    from appliance.config import policy_dir

    policies = tmp / "policies"
    shutil.copytree(policy_dir(), policies, dirs_exist_ok=True)
    (policies / "cluster.toml").write_text(
        f'url = "{url}"\npartitions = {PARTITIONS}\n[security]\nplain_bus = true\n')
    return {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)}


def test_a_token_in_the_nats_url_is_never_printed(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--new-key-file",
                   str(key)).returncode == 0
    auth = f'authorization {{ token: "{TOKEN}" }}\n'
    with nats_server(tmp_path / "nats", auth, jetstream=False) as url:
        with_token = url.replace("nats://", f"nats://{TOKEN}@")
        env = _policies(tmp_path, with_token)
        args = ["--data-dir", str(data), "--key-file", str(key)]
        erase = run_cli("erase", *args, "--tenant", "acme", "--user", "ulla", "--reason",
                        "DSAR 2026-77", env=env)
        doctor = run_cli("doctor", *args, "--json", env=env)
    # the server took the token: what it lacks is JetStream, said naming the server
    assert erase.returncode == 1 and "did not answer its JetStream API" in erase.stderr
    assert f"NATS at {url} did not answer" in erase.stderr, erase.stderr
    problems = json.loads(doctor.stdout)["problems"]
    assert doctor.returncode == 1 and len(problems) == 1, doctor.stdout
    for said in (erase.stdout, erase.stderr, doctor.stdout, doctor.stderr):
        assert TOKEN not in said and TOKEN.lower() not in said.lower(), said
