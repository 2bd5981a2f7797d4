"""A policy key the file does not know: one sentence naming the key it is likely a
misspelling of, and what to do (serve --check, serve's start and a SIGHUP reload say it).

Before, the sentence was pydantic's own, "key 'queu_max': Extra inputs are not permitted.",
which named no setting and no remedy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.config import load_policies
from appliance.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "policies"


def _refusal(tmp_path: Path, name: str, edit: str, new: str) -> str:
    folder = tmp_path / "policies"
    shutil.copytree(SHIPPED, folder)
    path = folder / name
    text = path.read_text()
    assert edit in text
    path.write_text(text.replace(edit, new, 1))
    with pytest.raises(ConfigError) as refused:
        load_policies(folder)
    return str(refused.value)


@pytest.mark.parametrize(("name", "edit", "new", "key", "meant"), [
    ("service.toml", "queue_max =", "queu_max =", "queu_max", "queue_max"),
    ("telemetry.toml", "otlp_endpoint =", "otlp_endpiont =", "tracing.otlp_endpiont",
     "otlp_endpoint"),
    ("correlation.toml", "link_threshold =", "link_treshold =", "link_treshold",
     "link_threshold"),
])
def test_a_misspelt_policy_key_names_the_key_it_likely_means(
        tmp_path: Path, name: str, edit: str, new: str, key: str, meant: str) -> None:
    said = _refusal(tmp_path, name, edit, new)
    assert f"key '{key}' is not a setting this file knows (did you mean '{meant}'?)" in said
    assert "correct its name or remove it" in said
    assert "Extra inputs" not in said


def test_a_key_in_a_table_of_tables_is_matched_against_that_table(tmp_path: Path) -> None:
    said = _refusal(tmp_path, "access.toml", "[roles.operator]", "[roles.probe]\npermissions = []\n"
                    "uid = [1000]\n\n[roles.operator]")
    assert "key 'roles.probe.uid' is not a setting this file knows (did you mean 'uids'?)" \
        in said


def test_an_unknown_key_like_no_setting_says_so_without_a_guess(tmp_path: Path) -> None:
    said = _refusal(tmp_path, "service.toml", "queue_max =", "zzz = 1\nqueue_max =")
    assert "key 'zzz' is not a setting this file knows: correct its name or remove it" in said


def test_a_missing_policy_file_or_folder_says_where_the_shipped_ones_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said only 'Policy file …/retention.toml is missing.' (and, for a mistyped
    $SEMTRACE_POLICY_DIR, named correlation.toml in a folder that is not there)."""
    folder = tmp_path / "policies"
    shutil.copytree(SHIPPED, folder)
    (folder / "retention.toml").unlink()
    with pytest.raises(ConfigError) as missing:
        load_policies(folder)
    assert str(missing.value) == (f"Policy file {folder / 'retention.toml'} is missing: copy "
                                  f"the shipped one from {SHIPPED / 'retention.toml'}.")
    monkeypatch.setenv("SEMTRACE_POLICY_DIR", str(tmp_path / "polices"))
    with pytest.raises(ConfigError) as nowhere:
        load_policies()
    assert str(nowhere.value) == (
        f"The policy folder {tmp_path / 'polices'} ($SEMTRACE_POLICY_DIR) does not exist: "
        f"give the folder that holds the policies, or copy the shipped ones from {SHIPPED}.")
