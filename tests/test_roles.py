"""Roles bound to OS identities and tenants, one permission check on every read path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import write_stream
from test_spine import run_cli

from appliance.config import AccessSettings, RoleSettings
from appliance.errors import AccessDenied
from appliance.roles import Caller, require

READ = ["threads:read", "search", "aggregates"]


def _access(**roles: RoleSettings) -> AccessSettings:
    return AccessSettings(default_role="analyst", roles=roles)


def test_a_role_bound_to_uids_or_groups_is_refused_to_everyone_else() -> None:
    access = _access(analyst=RoleSettings(permissions=READ, uids=[1001], gids=[2002]))
    assert require(access, "analyst", "search", caller=Caller(1001, frozenset({1001})))
    assert require(access, "analyst", "search", caller=Caller(7, frozenset({7, 2002})))
    with pytest.raises(AccessDenied, match="bound to other users"):
        require(access, "analyst", "search", caller=Caller(7, frozenset({7})))
    with pytest.raises(AccessDenied, match="have the 'audit' permission"):
        require(access, "analyst", "audit", caller=Caller(1001, frozenset()))


def test_a_role_bound_to_tenants_sees_only_those() -> None:
    access = _access(analyst=RoleSettings(permissions=READ, tenants=["acme"]))
    me = Caller(os.getuid(), frozenset())
    assert require(access, "analyst", "threads:read", caller=me, tenant="acme")
    with pytest.raises(AccessDenied, match="limited to tenant"):
        require(access, "analyst", "threads:read", caller=me, tenant="globex")


def test_a_user_prefix_matching_many_users_is_a_cross_user_search(policies: Any) -> None:
    from appliance.tui.searcher import scopes

    pairs, skipped = scopes(policies, "analyst", ["beta"], {"beta": ["u_1", "u_2"]})
    assert pairs == [] and skipped == ["beta"]  # cross_user_search is off for beta
    pairs, _ = scopes(policies, "analyst", ["beta"], {"beta": ["u_1"]})
    assert pairs == [("beta", "u_1")]
    pairs, _ = scopes(policies, "compliance", ["beta"], {"beta": ["u_1", "u_2"]})
    assert len(pairs) == 2


ROWS = [{"tenant": t, "user_id": u, "ts": "2026-03-02T09:00:00Z", "request_id": f"{t}-{u}",
         "text": f"How do I reset the {t} router password?"}
        for t in ("acme", "globex") for u in ("ann", "bob")]


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("roles")
    from appliance.config import policy_dir

    pol = tmp / "policies"
    shutil.copytree(policy_dir(), pol)
    me = os.getuid()
    (pol / "access.toml").write_text(f"""
default_role = "analyst"
[roles.analyst]
permissions = ["threads:read", "search", "aggregates"]
uids = [{me + 4242}]
[roles.analyst-acme]
permissions = ["threads:read", "search", "aggregates"]
uids = [{me}]
tenants = ["acme"]
[roles.compliance]
permissions = ["threads:read", "search", "audit", "retention", "reveal", "erase", "user_stats"]
[roles.operator]
permissions = ["service", "metrics", "threads:read"]
""")
    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text("roles test passphrase\n")
    common = ["--data-dir", str(tmp / "data"), "--passphrase-file", str(pw)]
    env = {"SEMTRACE_POLICY_DIR": str(pol)}
    src = write_stream(tmp / "in.jsonl", ROWS)
    done = run_cli("replay", str(src), "--out", str(tmp / "o.jsonl"), *common, env=env)
    assert done.returncode == 0, done.stderr
    return {"common": common, "env": env}


def _cli(ctx: dict[str, Any], *args: str) -> Any:
    return run_cli(*args, *ctx["common"], env=ctx["env"])


@pytest.mark.parametrize("command", [
    ["threads", "list", "--json"], ["threads", "show", "th_x"],
    ["search", "router password", "--tenant", "acme"],
    ["stats", "topics", "--tenant", "acme", "--json"],
])
def test_every_read_command_refuses_a_role_bound_to_another_uid(
        two_tenants: dict[str, Any], command: list[str]) -> None:
    out = _cli(two_tenants, *command, "--role", "analyst")
    assert out.returncode == 4 and "bound to other users" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_an_analyst_bound_to_a_tenant_reads_only_that_tenant(
        two_tenants: dict[str, Any]) -> None:
    listed = _cli(two_tenants, "threads", "list", "--json", "--role", "analyst-acme")
    assert listed.returncode == 0, listed.stderr
    threads = json.loads(listed.stdout)
    assert threads and {t["tenant"] for t in threads} == {"acme"}
    everything = json.loads(_cli(two_tenants, "threads", "list", "--json", "--role",
                                 "compliance").stdout)
    other = next(t["thread_id"] for t in everything if t["tenant"] == "globex")
    shown = _cli(two_tenants, "threads", "show", other, "--role", "analyst-acme")
    assert shown.returncode != 0 and "No thread" in shown.stderr
    for command in (["threads", "list", "--tenant", "globex"],
                    ["search", "router", "--tenant", "globex"],
                    ["stats", "topics", "--tenant", "globex", "--json"],
                    # the same refusal for a tenant that does not exist: no way to probe
                    ["stats", "topics", "--tenant", "initech", "--json"]):
        refused = _cli(two_tenants, *command, "--role", "analyst-acme")
        assert refused.returncode == 4 and "limited to tenant" in refused.stderr, command


def test_a_role_bound_to_several_tenants_lists_their_threads_whatever_others_do(
        pipeline: Any, data_dir: Path, passphrase_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, cli_runner: Any) -> None:
    from conftest import make_prompt

    from appliance.cli import cli
    from appliance.config import policy_dir

    pipeline.process([make_prompt(f"How do I reset the {t} router password?", tenant=t,
                                  user=u, minutes=m) for t, u, m in (
        ("acme", "ann", 0), ("initech", "ian", 1), ("globex", "g1", 2), ("globex", "g2", 3),
        ("globex", "g3", 4))])  # globex's threads are the most recent
    pol = tmp_path / "policies"
    shutil.copytree(policy_dir(), pol)
    with (pol / "access.toml").open("a") as f:
        f.write('\n[roles.analyst-two]\npermissions = ["threads:read"]\n'
                'tenants = ["acme", "initech"]\n')
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(pol))
    out = cli_runner.invoke(cli, ["threads", "list", "--json", "--limit", "2", "--role",
                                  "analyst-two", "--data-dir", str(data_dir),
                                  "--passphrase-file", str(passphrase_file)])
    assert out.exit_code == 0, out.output
    assert sorted(t["tenant"] for t in json.loads(out.output)) == ["acme", "initech"]


def test_one_users_exact_figures_need_the_user_stats_permission(
        two_tenants: dict[str, Any]) -> None:
    args = ["stats", "topics", "--tenant", "acme", "--user", "ann", "--json"]
    refused = _cli(two_tenants, *args, "--role", "analyst-acme")
    assert refused.returncode == 4 and "have the 'user_stats' permission" in refused.stderr
    allowed = _cli(two_tenants, *args, "--role", "compliance")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["exact"] is True


def test_the_tui_of_a_tenant_bound_role_opens_on_its_tenant(runtime: Any, pipeline: Any) -> None:
    from conftest import make_prompt

    from appliance.tui.app import make_app

    pipeline.process([make_prompt("Where is the VPN guide?", tenant=t) for t in ("acme", "b")])
    access = runtime.policies.access.model_copy(update={"roles": {
        **runtime.policies.access.roles,
        "analyst-acme": RoleSettings(permissions=READ, tenants=["acme"]),
        "analyst": RoleSettings(permissions=READ, uids=[os.getuid() + 4242])}})
    runtime.policies = runtime.policies.model_copy(update={"access": access})
    app = make_app(runtime, role="analyst-acme")
    assert app.ctx.reader.tenant == "acme"
    assert app.ctx.reader.tenants() == ["acme"]
    with pytest.raises(AccessDenied, match="limited to tenant"):
        make_app(runtime, role="analyst-acme", tenant="b")
    with pytest.raises(AccessDenied, match="bound to other users"):
        make_app(runtime, role="analyst")
