"""The bus key: sealing, opening, the key file and `semtrace cluster bus-key` (no NATS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_spine import run_cli

from appliance.cluster.client import open_reply, sealed_request
from appliance.errors import ConfigError, SemtraceError
from appliance.keys.bus import (
    Unsealed,
    create_key_file,
    ingest_aad,
    load_bus_keys,
    open_frame,
    reply_aad,
)

ROW = {"v": 1, "op": "ingest", "tenant": "acme", "request_id": "r1", "user_id": "u1",
       "text": "Send the offer to ana.lima@example.com."}


def test_a_sealed_request_hides_its_prompt_and_opens_only_for_its_tenant(tmp_path: Path) -> None:
    create_key_file(tmp_path / "bus.key")
    keys = load_bus_keys(tmp_path / "bus.key")
    subject, payload = sealed_request(ROW, keys)
    assert subject == "semtrace.ingest.acme"
    assert b"example.com" not in payload and b"u1" not in payload
    assert sealed_request(ROW, keys)[1] != payload  # a fresh nonce each time
    frame, kid = open_frame(keys, payload, ingest_aad("acme"))
    assert json.loads(frame) == ROW and kid.hex() == keys.ids()[0]
    with pytest.raises(Unsealed, match="another tenant"):
        open_frame(keys, payload, ingest_aad("globex"))
    with pytest.raises(Unsealed, match="altered"):
        open_frame(keys, payload[:-1] + bytes([payload[-1] ^ 1]), ingest_aad("acme"))
    with pytest.raises(Unsealed, match="this node has none"):
        open_frame(None, payload, ingest_aad("acme"))
    with pytest.raises(Unsealed, match="accepts only messages sealed"):
        open_frame(keys, json.dumps(ROW).encode(), ingest_aad("acme"))
    with pytest.raises(Unsealed, match="request cannot|does not open"):  # not as a reply
        keys.open(payload, reply_aad("acme"))
    assert "example" not in repr(keys) and keys.ids()[0] in repr(keys)


def test_a_gateway_that_seals_takes_a_plain_answer_only_when_it_is_an_error(
        tmp_path: Path) -> None:
    create_key_file(tmp_path / "bus.key")
    keys = load_bus_keys(tmp_path / "bus.key")
    answer = {"request_id": "r1", "ok": True, "conversation_id": "th_1"}
    sealed = keys.seal(json.dumps(answer).encode(), reply_aad("acme"))
    assert open_reply(sealed, "acme", keys) == answer
    with pytest.raises(SemtraceError, match="does not open"):
        open_reply(sealed, "globex", keys)
    with pytest.raises(SemtraceError, match="plain answer to a sealed request"):
        open_reply(json.dumps(answer).encode(), "acme", keys)
    error = {"request_id": None, "ok": False, "error": {"code": "bad_request", "message": "x"}}
    assert open_reply(json.dumps(error).encode(), "acme", keys) == error


def test_rolling_the_bus_key_keeps_queued_messages_open(tmp_path: Path) -> None:
    path = tmp_path / "bus.key"
    r = run_cli("cluster", "bus-key", "new", str(path), "--json")
    assert r.returncode == 0, r.stderr
    old = json.loads(r.stdout)["changed"]
    assert path.stat().st_mode & 0o777 == 0o600
    queued = sealed_request(ROW, load_bus_keys(path))[1]  # sealed before the roll
    new = json.loads(run_cli("cluster", "bus-key", "add", str(path), "--json").stdout)["changed"]
    assert load_bus_keys(path).ids() == [old, new]  # added: opens, does not seal yet
    assert run_cli("cluster", "bus-key", "use", str(path), new).returncode == 0
    keys = load_bus_keys(path)
    assert keys.ids() == [new, old]
    assert open_frame(keys, queued, ingest_aad("acme"))[1].hex() == old  # still opens
    assert open_frame(keys, sealed_request(ROW, keys)[1], ingest_aad("acme"))[1].hex() == new
    r = run_cli("cluster", "bus-key", "drop", str(path), new)
    assert r.returncode != 0 and "is the sealing key" in r.stderr
    assert run_cli("cluster", "bus-key", "drop", str(path), old).returncode == 0
    with pytest.raises(Unsealed, match=f"bus key {old}, which is not in this node's"):
        open_frame(load_bus_keys(path), queued, ingest_aad("acme"))
    listed = run_cli("cluster", "bus-key", "list", str(path))
    assert listed.stdout.strip() == f"{new} (seals)"
    assert "Traceback" not in r.stderr + listed.stderr


def test_a_bus_key_file_readable_by_others_or_malformed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bus.key"
    create_key_file(path)
    again = run_cli("cluster", "bus-key", "new", str(path))
    # bad input, exit 2 as the README lists it, with what to do (it was 1, and said nothing)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert f"give a new file (`semtrace cluster bus-key add {path}`" in again.stderr
    (kid,) = [line.split()[0] for line in path.read_text().splitlines()
              if not line.startswith("#")]
    for verb in ("use", "drop"):
        unknown = run_cli("cluster", "bus-key", verb, str(path), "feedf00d")
        assert unknown.returncode == 2, unknown.stderr
        assert f"holds no key feedf00d: give one of {kid} " in unknown.stderr
    sealing = run_cli("cluster", "bus-key", "drop", str(path), kid)
    assert sealing.returncode == 2 and "is the sealing key" in sealing.stderr
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        load_bus_keys(path)
    path.chmod(0o600)
    secret = path.read_text().split()[-1]
    path.write_text("0011 " + secret + "\n")
    with pytest.raises(ConfigError, match="line 1 is not") as err:
        load_bus_keys(path)
    assert secret not in str(err.value)
    with pytest.raises(ConfigError, match="bus_key_file seals messages to a nats:// URL"):
        from appliance.integrations.decorator import Semtrace

        Semtrace(tmp_path / "semtrace.sock", tenant="acme", bus_key_file=path)


def test_a_bus_key_file_in_a_missing_folder_is_one_sentence_naming_it(tmp_path: Path) -> None:
    """Before: `semtrace: No such file or directory: <path>.tmp.`, naming a file the operator
    never asked for."""
    path = tmp_path / "no-such-folder" / "bus.key"
    r = run_cli("cluster", "bus-key", "new", str(path))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == (f"semtrace: The bus key file {path} cannot be written (no "
                                "such file or directory); nothing was changed."), r.stderr
    assert not path.parent.exists()


def test_cluster_toml_takes_an_absolute_bus_key_file() -> None:
    from pydantic import ValidationError

    from appliance.config import ClusterSettings

    settings = ClusterSettings.model_validate({"security": {"bus_key_file": "/etc/s/bus.key"}})
    assert settings.security.bus_key_file == "/etc/s/bus.key"
    with pytest.raises(ValidationError, match="absolute path"):
        ClusterSettings.model_validate({"security": {"bus_key_file": "bus.key"}})


def test_a_gateway_without_a_bus_key_refuses_a_nats_url_unless_told_plain_is_fine(
        tmp_path: Path) -> None:
    import asyncio

    from appliance.cluster.client import AsyncNatsClient, NatsClient
    from appliance.integrations.decorator import Semtrace
    from appliance.integrations.litellm import SemtraceLogger

    url = "nats://127.0.0.1:1"  # nothing listens: a refusal here happens before connecting
    refusals = [
        lambda: NatsClient(url, timeout=1),
        lambda: asyncio.run(AsyncNatsClient.connect(url, timeout=1)),
        lambda: AsyncNatsClient(object(), timeout=1),
        lambda: Semtrace(url, tenant="acme"),
        lambda: SemtraceLogger(url, tenant="acme"),
    ]
    sentences = set()
    for make in refusals:
        with pytest.raises(ConfigError, match="would publish prompts to NATS in plain text") \
                as err:
            make()
        sentences.add(str(err.value))
    (sentence,) = sentences  # the same one sentence everywhere, naming both ways out
    assert "\n" not in sentence and sentence.endswith("plain text.")
    assert "bus_key_file=" in sentence and "plain_bus=True" in sentence
    assert "`semtrace cluster bus-key new FILE`" in sentence
    # the explicit opt-out constructs (the adapters connect on first use) ...
    assert Semtrace(url, tenant="acme", plain_bus=True)._bus_keys is None
    assert SemtraceLogger(url, tenant="acme", plain_bus=True)._bus_keys is None
    assert AsyncNatsClient(object(), timeout=1, plain_bus=True).keys is None
    # ... and so does a key; the Unix socket needs neither (nothing reaches a disk)
    create_key_file(tmp_path / "bus.key")
    assert Semtrace(url, tenant="acme", bus_key_file=tmp_path / "bus.key")._bus_keys
    assert Semtrace(tmp_path / "semtrace.sock", tenant="acme")._bus_keys is None
    assert SemtraceLogger(tmp_path / "semtrace.sock", tenant="acme")._bus_keys is None
    with pytest.raises(ConfigError, match="contradict each other"):
        SemtraceLogger(url, tenant="acme", bus_key_file=tmp_path / "bus.key", plain_bus=True)


def test_cluster_toml_plain_bus_is_the_explicit_opt_out() -> None:
    from pydantic import ValidationError

    from appliance.config import ClusterSettings

    assert ClusterSettings().security.plain_bus is False  # sealing is the default
    settings = ClusterSettings.model_validate({"security": {"plain_bus": True}})
    assert settings.security.plain_bus is True
    with pytest.raises(ValidationError, match="contradict each other"):
        ClusterSettings.model_validate({"security": {"plain_bus": True,
                                                     "bus_key_file": "/etc/s/bus.key"}})


def test_accept_plain_takes_plain_messages_while_sealed_ones_must_still_open(
        tmp_path: Path) -> None:
    # Moving a running cluster to sealing: nodes with the key take what gateways not yet
    # given it send in plain text, and nothing sealed that fails to open.
    create_key_file(tmp_path / "bus.key")
    keys = load_bus_keys(tmp_path / "bus.key")
    plain = json.dumps(ROW).encode()
    assert open_frame(keys, plain, ingest_aad("acme"), accept_plain=True) == (plain, None)
    _, payload = sealed_request(ROW, keys)
    frame, kid = open_frame(keys, payload, ingest_aad("acme"), accept_plain=True)
    assert json.loads(frame) == ROW and kid is not None
    with pytest.raises(Unsealed, match="another tenant"):
        open_frame(keys, payload, ingest_aad("globex"), accept_plain=True)
    with pytest.raises(Unsealed, match="altered"):
        open_frame(keys, payload[:-1] + bytes([payload[-1] ^ 1]), ingest_aad("acme"),
                   accept_plain=True)


def test_cluster_toml_accept_plain_needs_a_bus_key() -> None:
    from pydantic import ValidationError

    from appliance.config import ClusterSettings

    assert ClusterSettings().security.accept_plain is False
    moving = ClusterSettings.model_validate({"security": {"accept_plain": True,
                                                          "bus_key_file": "/etc/s/bus.key"}})
    assert moving.security.accept_plain is True
    with pytest.raises(ValidationError, match="needs a bus_key_file"):
        ClusterSettings.model_validate({"security": {"accept_plain": True}})
