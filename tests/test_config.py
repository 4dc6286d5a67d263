"""Config validation: defaults from the schema, unknown keys and wrong types name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dlpipe.cli import main
from dlpipe.config import apply_overrides, defaults, load_config, merge_json, validate_config
from dlpipe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_filled_with_defaults() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert cfg["synth"]["shape"] == [64, 128, 128]
    assert cfg["synth"]["seed"] == 5  # the demo scan (the schema's default is 0)
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


def test_apply_overrides_options_skip_none_and_tuples_become_lists() -> None:
    section = {"seed": 0, "shape": [64, 128, 128], "split": {"gap": 2, "fractions": [0.6, 0.2]}}
    out = apply_overrides(
        section, {"seed": None, "shape": (8, 16, 16), "split.gap": 0, "split.fractions": None}, []
    )
    assert out == {"seed": 0, "shape": [8, 16, 16], "split": {"gap": 0, "fractions": [0.6, 0.2]}}
    assert section["shape"] == [64, 128, 128] and section["split"]["gap"] == 2  # not modified


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("lr=1e-4", 0.0001),  # a JSON number (YAML 1.1 would read "1e-4" as text)
        ("epochs=3", 3),
        ("amp=true", True),
        ("class_weights=null", None),
        ("patch_size=[8,8]", [8, 8]),
        ("optimizer=adamw", "adamw"),  # not JSON: the plain text
        ('optimizer="sgd"', "sgd"),
        ("name=a=b", "a=b"),  # only the first '=' separates
        ("name=", ""),
    ],
)
def test_apply_overrides_set_values_are_json_else_text(item: str, expected: object) -> None:
    key = item.partition("=")[0]
    assert apply_overrides({}, {}, [item])[key] == expected


def test_apply_overrides_set_nested_keys_win_over_options() -> None:
    section = {"lr": 0.001, "loss": {"ce": 1.0, "dice": 1.0}, "maskrcnn": {"backbone": "r18"}}
    out = apply_overrides(
        section,
        {"lr": 0.5},
        ["lr=0.01", "loss.focal=2", "maskrcnn.backbone=resnet50", "new.deep.key=1"],
    )
    assert out["lr"] == 0.01
    assert out["loss"] == {"ce": 1.0, "dice": 1.0, "focal": 2}
    assert out["maskrcnn"] == {"backbone": "resnet50"}
    assert out["new"] == {"deep": {"key": 1}}
    assert section["loss"] == {"ce": 1.0, "dice": 1.0}


def test_apply_overrides_checks_keys_against_the_schema_of_the_named_section() -> None:
    train = defaults()["train"]
    out = apply_overrides(
        train, {"epochs": 2}, ["loss.focal=1", "maskrcnn.backbone=resnet50"], name="train"
    )
    assert out["epochs"] == 2 and out["loss"]["focal"] == 1
    with pytest.raises(
        ConfigError, match=r"--set 'lrr=1': unknown key 'train\.lrr' \(allowed here: "
    ):
        apply_overrides(train, {}, ["lrr=1"], name="train")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.loss\.tversky'"):
        apply_overrides(train, {}, ["loss.tversky=1"], name="train")
    with pytest.raises(ConfigError, match=r"unknown key 'tile\.split\.gapp'"):
        apply_overrides(defaults()["tile"], {"split.gapp": 1}, [], name="tile")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr", r"--set 'lr': expected KEY=VALUE"),
        ("=3", r"--set '=3': expected KEY=VALUE"),
        ("a..b=1", r"--set 'a..b=1': empty key part in 'a..b'"),
        ("lr.x=1", r"--set 'lr.x=1': key 'train.lr' holds 0.001, not a mapping"),
    ],
)
def test_apply_overrides_bad_syntax_is_a_config_error(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides({"lr": 0.001}, {}, [item], name="train")


def test_cli_set_unknown_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "none.zarr"), "-o", str(tmp_path / "m"), "--set", "lrr=1"])
    assert exc.value.code == 2
    assert "unknown key 'train.lrr'" in capsys.readouterr().err
