"""The spine end to end: model, keys, store, shredding, replay, query commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_prompt, scan_for


def run_cli(*args: str, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, env=full_env, input=stdin, timeout=600)


# ---------------------------------------------------------------- model


def test_altered_model_is_refused_with_one_sentence(tmp_path: Path) -> None:
    from appliance.config import model_dir

    altered = tmp_path / "models"
    shutil.copytree(model_dir(), altered)
    gguf = next(altered.glob("*.gguf"))
    data = bytearray(gguf.read_bytes())
    data[len(data) // 2] ^= 0xFF
    gguf.write_bytes(bytes(data))
    result = run_cli("model", "verify", env={"SEMTRACE_MODEL_DIR": str(altered)})
    assert result.returncode == 3
    assert "does not match its checksum" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_model_is_refused(tmp_path: Path) -> None:
    from appliance.config import model_dir

    missing = tmp_path / "models"
    shutil.copytree(model_dir(), missing)
    next(missing.glob("*.gguf")).unlink()
    result = run_cli("model", "verify", env={"SEMTRACE_MODEL_DIR": str(missing)})
    assert result.returncode == 3 and "is missing" in result.stderr


def test_embeddings_are_deterministic_normalised_and_meaningful(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = ["What's the weather in Paris?", "How's the weather in Paris today?",
             "How do I reset my password?"]
    a, _ = embedder.embed(texts)
    b, _ = embedder.embed(list(reversed(texts)))
    assert a.shape == (3, 384) and a.dtype == np.float32
    np.testing.assert_allclose(a, b[::-1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(a[0] @ a[1]) > float(a[0] @ a[2]) + 0.2


def test_overlong_input_is_truncated_not_fatal(embedder) -> None:  # type: ignore[no-untyped-def]
    vecs, truncated = embedder.embed(["word " * 2000, "short"])
    assert truncated == [True, False]
    assert np.isfinite(vecs).all()


# ---------------------------------------------------------------- keys and store


def test_migrations_from_blank_database_are_recorded_once(runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance import migrations

    names = migrations.applied(runtime.store.db)
    assert names == [m.__name__ for m in migrations.MIGRATIONS]
    assert migrations.migrate(runtime.store.db) == []


def test_wrong_passphrase_is_refused_and_changes_nothing(runtime, data_dir: Path,
                                                         tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime.close()
    before = {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    wrong = tmp_path / "wrong"
    wrong.touch(mode=0o600)
    wrong.write_text("not the passphrase\n")
    result = run_cli("threads", "list", "--data-dir", str(data_dir), "--passphrase-file",
                     str(wrong))
    assert result.returncode == 2
    assert "Wrong passphrase" in result.stderr and "Traceback" not in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()} == before


def test_key_file_must_be_private(tmp_path: Path) -> None:
    from appliance.errors import SemtraceError
    from appliance.keys import read_key_file, write_key_file

    path = tmp_path / "master.key"
    write_key_file(path)
    assert read_key_file(path).kind == "keyfile"
    path.chmod(0o644)
    with pytest.raises(SemtraceError, match="chmod 600"):
        read_key_file(path)


def test_no_prompt_text_or_user_id_on_disk(pipeline, runtime, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    canaries = ["zebracanary", "quokka-user-7731"]
    pipeline.process([make_prompt("Tell me about the zebracanary migration season",
                                  user="quokka-user-7731"),
                      make_prompt("And where does the zebracanary winter?",
                                  user="quokka-user-7731", minutes=1)])
    runtime.store.checkpoint()
    assert scan_for(data_dir, canaries) == []


def test_shred_makes_records_undecryptable_even_from_an_earlier_copy(
        pipeline, runtime, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from appliance.store import DB_FILE, KEYS_FILE, Store, day_of

    prompts = [make_prompt("Plan a trip to the mountains", minutes=0),
               make_prompt("What should I pack?", minutes=2),
               make_prompt("Unrelated: how do I bake bread?", user="bob", minutes=3)]
    outcomes = pipeline.process(prompts)
    runtime.store.checkpoint()
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy(data_dir / DB_FILE, backup / DB_FILE)  # a database backup taken before

    user = runtime.keyring.pseudonym("acme", "alice")
    result = runtime.store.shred("acme", user, day_of(prompts[0].ts), reason="test")
    assert result.records == 2 and set(result.record_ids) == {o.record_id for o in outcomes[:2]}
    assert runtime.store.records("r.id = ?", (outcomes[0].record_id,)) == []
    runtime.store.checkpoint()

    # The old database copy still holds the ciphertext rows, but opened with the
    # live key store (and the master key) they no longer decrypt.
    shutil.copy(data_dir / KEYS_FILE, backup / KEYS_FILE)
    copy = Store.open(backup, runtime.keyring, readonly=True)
    old = copy.records("r.id IN (?, ?, ?)", tuple(o.record_id for o in outcomes))
    copy.close()
    texts = {r.record_id: r.text for r in old}
    assert texts[outcomes[0].record_id] is None and texts[outcomes[1].record_id] is None
    assert texts[outcomes[2].record_id] == "Unrelated: how do I bake bread?"  # bob untouched
    assert scan_for(data_dir, ["Plan a trip to the mountains", "pack?"]) == []


def test_history_reloaded_after_a_restart_keeps_entity_overlap(pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    first = pipeline.process([make_prompt("What's the weather in Paris?")])[0]
    hist = runtime.store.candidates("acme", runtime.keyring.pseudonym("acme", "alice"), 0.0,
                                    model_id=pipeline.embedder.model_id)
    assert [c.record_id for c in hist] == [first.record_id]
    assert len(hist[0].entity_keys) == 1 and hist[0].entity_keys[0].startswith("LOCATION:")
    assert "paris" not in hist[0].entity_keys[0].lower()  # a keyed digest, not the value
