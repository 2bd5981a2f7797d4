"""`semtrace doctor` on a node of a cluster (`url` in cluster.toml) names what `serve`
would refuse at start, in serve's own sentence: a bus key file others can read, none at
all, NATS credentials refused, no NATS server at the URL. Before, it said "No problems
found." (exit 0) and the node then did not start. A real nats-server (test_cluster's)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from test_cluster import PARTITIONS, nats_server
from test_spine import run_cli

from appliance.cluster.bus import NO_SERVER_REMEDY


def _node(tmp: Path, url: str, security: str) -> tuple[list[str], dict[str, str]]:
    """doctor's arguments for an initialised data dir, and an env whose cluster.toml has
    `url` and `security` (its [security] lines)."""
    from appliance.config import policy_dir

    policies = tmp / "policies"
    shutil.copytree(policy_dir(), policies, dirs_exist_ok=True)
    (policies / "cluster.toml").write_text(
        f'url = "{url}"\npartitions = {PARTITIONS}\n[security]\n{security}')
    key = tmp / "cluster.key"
    if not key.exists():
        assert run_cli("init", "--data-dir", str(tmp / "data"), "--new-key-file",
                       str(key)).returncode == 0
    return (["doctor", "--data-dir", str(tmp / "data"), "--key-file", str(key), "--json"],
            {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)})


def _doctor(args: list[str], env: dict[str, str]) -> tuple[int, list[str], list[str]]:
    out = run_cli(*args, env=env)
    assert "Traceback" not in out.stderr
    report = json.loads(out.stdout)
    return out.returncode, report["problems"], report["warnings"]


def test_doctor_names_what_would_stop_a_node_of_a_cluster(tmp_path: Path) -> None:
    bus_key = tmp_path / "bus.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        args, env = _node(tmp_path, url, f'bus_key_file = "{bus_key}"\n')
        assert _doctor(args, env) == (0, [], [])  # serve would start: nothing to say
        bus_key.chmod(0o644)
        code, problems, _ = _doctor(args, env)
        assert code == 1 and problems == [
            f"The NATS bus key file {bus_key} must be readable by its owner only (chmod 600)."]
        serve = run_cli("serve", "--check", *args[1:5], env=env)  # serve says the same
        assert serve.returncode != 0 and problems[0] in serve.stderr, serve.stderr
        bus_key.chmod(0o600)
        args, env = _node(tmp_path, url, "")  # neither a bus key nor the opt-out
        code, problems, _ = _doctor(args, env)
        assert code == 1 and len(problems) == 1
        assert problems[0].startswith("This node would take prompts from NATS in plain text")
        args, env = _node(tmp_path, url, "plain_bus = true\n")  # the opt-out: a warning
        code, problems, warnings = _doctor(args, env)
        assert (code, problems) == (0, [])
        assert any(w.startswith("plain_bus = true: prompts, PII and user ids") for w in warnings)
    # the same node once its NATS server is gone
    args, env = _node(tmp_path, url, f'bus_key_file = "{bus_key}"\n')
    code, problems, _ = _doctor(args, env)
    assert code == 1 and problems == [f"No NATS server answers at {url} ({NO_SERVER_REMEDY})."]


def test_doctor_names_nats_credentials_the_server_refuses(tmp_path: Path) -> None:
    bus_key, password = tmp_path / "bus.key", tmp_path / "node.password"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    password.write_text("not-the-password\n")
    password.chmod(0o600)
    auth = 'authorization { user: node, password: "the-password" }\n'
    with nats_server(tmp_path / "nats", auth) as url:
        args, env = _node(tmp_path, url, f'bus_key_file = "{bus_key}"\nuser = "node"\n'
                                         f'password_file = "{password}"\n')
        code, problems, _ = _doctor(args, env)
    assert code == 1 and problems == [
        f"The NATS server at {url} refused these credentials (authorization violation); "
        "check [security] in cluster.toml."]
