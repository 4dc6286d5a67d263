"""Config validation: defaults from the schema, unknown keys and wrong types name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dlpipe.cli import main
from dlpipe.config import defaults, load_config, merge_json, validate_config
from dlpipe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_filled_with_defaults() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert cfg["synth"]["shape"] == [64, 128, 128]
    assert cfg["synth"]["fibre_fraction"] == 0.17  # not in config.yaml: from the schema
    assert cfg["tracking"]["uri"] is None


def test_defaults_cover_every_section() -> None:
    cfg = defaults()
    assert cfg["results"] == "results"
    assert cfg["tracking"]["enabled"] is True
    assert cfg["synth"]["seed"] == 0


def test_unknown_nested_key_names_its_path(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"synth": {"seed": 1, "sede": 2}}))
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'synth\.sede'"):
        load_config(p)


def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match="unknown key 'trainnig'"):
        validate_config({"trainnig": {}})


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"key 'synth\.seed': 'abc' is not of type 'integer'"):
        validate_config({"synth": {"seed": "abc"}})


def test_out_of_range_value() -> None:
    with pytest.raises(ConfigError, match=r"synth\.shape"):
        validate_config({"synth": {"shape": [4, 128, 128]}})


def test_validate_does_not_modify_input() -> None:
    data = {"synth": {"seed": 3}}
    validate_config(data)
    assert data == {"synth": {"seed": 3}}


def test_merge_json_is_deep_and_validated() -> None:
    cfg = merge_json(defaults(), '{"synth": {"seed": 7}}')
    assert cfg["synth"]["seed"] == 7 and cfg["synth"]["shape"] == [64, 128, 128]
    with pytest.raises(ConfigError, match="not valid JSON"):
        merge_json(defaults(), "{nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"synth": {"bogus": 1}}, "unknown key 'synth.bogus'"),
        ({"synth": {"seed": "x"}}, "key 'synth.seed'"),
    ],
)
def test_cli_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: dict, message: str
) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(content))
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(p), "synth", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "bad.yaml" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(tmp_path / "none.yaml"), "synth", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "none.yaml: config file not found" in capsys.readouterr().err
