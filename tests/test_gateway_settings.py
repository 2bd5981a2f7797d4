"""An adapter given a setting no request can work with refuses it when it is built, in one
sentence naming it: before, `timeout=0` (or negative, NaN, infinite) built an adapter whose
every request failed, logged as a service that did not answer (the operator then looks at
a healthy service), and a misspelt `mode` had every prompt sent after its answer refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
pytest.importorskip("litellm")

from appliance.errors import ConfigError  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("adapter", [Semtrace, SemtraceLogger])
@pytest.mark.parametrize(("setting", "said"), [
    ({"timeout": 0}, "timeout=0: it must be a positive number of seconds"),
    ({"timeout": -1.0}, "timeout=-1.0: it must be a positive number of seconds"),
    ({"timeout": float("nan")}, "timeout=nan: it must be a positive number of seconds"),
    ({"timeout": float("inf")}, "timeout=inf: it must be a positive number of seconds"),
    ({"timeout": "5"}, "timeout='5': it must be a positive number of seconds"),
    ({"register_wait": float("nan")}, "register_wait=nan: it must be a number of seconds"),
])
def test_a_timeout_no_request_can_meet_is_refused_when_the_adapter_is_built(
        tmp_path: Path, adapter: Any, setting: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        adapter(tmp_path / "semtrace.sock", tenant="acme", **setting)
    assert str(refused.value).startswith(said) and str(refused.value).count(". ") == 0


def test_a_mode_other_than_sync_or_async_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        SemtraceLogger(tmp_path / "semtrace.sock", tenant="acme", mode="asynch")
    assert str(refused.value) == ("mode='asynch': it must be 'sync' (a reply after the "
                                  "commit) or 'async' (a reply on enqueue).")


def test_usual_settings_are_kept(tmp_path: Path) -> None:
    app = Semtrace(tmp_path / "semtrace.sock", tenant="acme", timeout=2, register_wait=5)
    assert (app.timeout, app.register_wait) == (2.0, 2.0)  # the wait is at most the timeout
    logger = SemtraceLogger(tmp_path / "semtrace.sock", tenant="acme", register_wait=-1)
    assert (logger.timeout, logger.register_wait) == (5.0, 0.0)


@pytest.mark.parametrize(("target", "setting", "said"), [
    ("semtrace.sock", {"tenant": ""}, "tenant '': a tenant is 1-128 characters"),
    ("semtrace.sock", {"tenant": "acme\n"}, "tenant 'acme\\n': a tenant is 1-128 characters"),
    ("semtrace.sock", {"tenant": "a" * 129}, "tenant 'aaaa"),
    ("nats://127.0.0.1:4222", {"tenant": "acme corp", "plain_bus": True},
     "tenant 'acme corp': over NATS a tenant is 1-128 letters, digits, '_' or '-'."),
])
def test_a_tenant_every_call_of_which_would_be_refused_is_refused_when_built(
        tmp_path: Path, target: str, setting: dict[str, Any], said: str) -> None:
    where = target if target.startswith("nats:") else tmp_path / target
    for adapter in (Semtrace, SemtraceLogger):
        with pytest.raises(ConfigError) as refused:
            adapter(where, **setting)
        assert str(refused.value).startswith(said)
    with pytest.raises(ConfigError, match=r"^tenant 'ops\\tteam': a tenant is 1-128"):
        SemtraceLogger(tmp_path / "semtrace.sock", tenant="acme",
                       tenant_by_team={"team-7": "ops\tteam"})
