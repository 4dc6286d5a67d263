"""Configuration: one JSON Schema (``workflow/schemas/config.schema.yaml``) for all.

The Snakefile validates ``config.yaml`` against the schema with Snakemake's
``validate``; the CLI calls :func:`load_config`, which does the same and fills in
the schema's defaults. Unknown keys and wrong types raise :class:`ConfigError`
naming the key's path (``synth.seed``). :func:`apply_overrides` lays command-line
options and ``--set KEY=VALUE`` items over one section.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dlpipe.errors import ConfigError, UserError

__all__ = [
    "apply_overrides",
    "config_hash",
    "defaults",
    "load_config",
    "merge_json",
    "require_file",
    "schema",
    "schema_path",
    "validate_config",
]

SCHEMA_NAME = "config.schema.yaml"


def schema_path() -> Path:
    """Path of the config schema (inside the wheel, or the source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here / "schemas" / SCHEMA_NAME,
        here.parents[1] / "workflow" / "schemas" / SCHEMA_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SCHEMA_NAME} not found next to the dlpipe package")


@cache
def schema() -> dict[str, Any]:
    """The parsed config schema."""
    return yaml.safe_load(schema_path().read_text())


def defaults() -> dict[str, Any]:
    """The configuration made of the schema's defaults alone."""
    return validate_config({})


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML config, validate it and fill in defaults.

    Parameters
    ----------
    path : path or None
        A YAML file. None gives the defaults.

    Raises
    ------
    ConfigError
        The file is missing or malformed, has an unknown key or a wrong value.
    """
    if path is None:
        return defaults()
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}", path=path) from None
    return validate_config(data if data is not None else {}, source=path)


def validate_config(data: Any, *, source: str | Path | None = None) -> dict[str, Any]:
    """Validate a config mapping against the schema and return it with defaults filled in.

    The input is not modified.
    """
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping of keys to values", path=source)
    config = copy.deepcopy(data)
    _fill_defaults(config, schema())
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(e.path)))
    if errors:
        raise ConfigError(_describe(errors[0]), path=source)
    _check_values(config, source)
    return config


ONE_BASED_CLASSES = ("cvat.classes",)
"""Class lists whose first name is class 1: class 0 is the implicit ``background``."""


def _check_values(node: Any, source: str | Path | None, where: str = "") -> None:
    """What the schema cannot say: every number finite, class names unique.

    NaN and infinity pass JSON Schema's ``minimum`` checks and cannot be written as
    strict JSON, so no config value may be non-finite. A class list may not repeat a
    name, and a 1-based list (:data:`ONE_BASED_CLASSES`) may not name ``background``.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            _check_values(value, source, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for value in node:
            _check_values(value, source, where)
        if where.rsplit(".", 1)[-1] == "classes":
            _check_classes(node, source, where)
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"key '{where}': {node!r} is not a finite number", path=source)


def _check_classes(names: list[Any], source: str | Path | None, where: str) -> None:
    seen: set[Any] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"key '{where}': class {name!r} is listed twice", path=source)
        seen.add(name)
    if where in ONE_BASED_CLASSES and "background" in seen:
        raise ConfigError(
            f"key '{where}': 'background' is implicit as class 0; list only the classes from 1 on",
            path=source,
        )


def _fill_defaults(instance: dict[str, Any], node: dict[str, Any]) -> None:
    for key, sub in node.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        key = ".".join(filter(None, [where, str(extra[0])]))
        return f"unknown key '{key}' (allowed here: {', '.join(sorted(allowed))})"
    if error.validator == "type":
        return f"key '{where}': {error.instance!r} is not of type {error.validator_value!r}"
    return f"key '{where or '<top>'}': {error.message}"


def merge_json(config: dict[str, Any], text: str) -> dict[str, Any]:
    """Merge a JSON mapping over ``config`` (nested mappings merged key by key), re-validate.

    ``text`` is the JSON itself, or the path of a file holding it (what the workflow passes,
    so that the Snakemake report shows a short path instead of the JSON).
    """
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--config-json: neither a JSON object nor a file: {text}")
        text = path.read_text()
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--config-json is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(extra, dict):
        raise ConfigError("--config-json must be a JSON object")
    merged = copy.deepcopy(config)
    _deep_update(merged, extra)
    return validate_config(merged, source="--config-json")


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def apply_overrides(
    section: Mapping[str, Any],
    options: Mapping[str, Any],
    set_items: Iterable[str] | None = None,
    *,
    name: str = "",
) -> dict[str, Any]:
    """Lay command-line options, then ``--set`` items, over one config section.

    Parameters
    ----------
    section : mapping
        The config section (e.g. ``config["train"]``); it is not modified.
    options : mapping
        Dotted key (``"split.gap"``) -> value of a command-line option. None means
        "not given" and is skipped; a tuple becomes a list.
    set_items : iterable of str, optional
        ``KEY=VALUE`` items applied after ``options``. KEY is a dotted path inside the
        section (``maskrcnn.backbone``; missing mappings on the way are created). VALUE is
        parsed as JSON (``3``, ``1e-4``, ``true``, ``null``, ``[1, 2]``, ``"x"``); text that
        is not JSON is taken as a plain string (``adamw``).
    name : str, optional
        The section's name (``"train"``): keys are then checked against its schema and
        errors name the full path (``train.lr``).

    Returns
    -------
    dict
        A new section; validate the whole config afterwards (:func:`validate_config`).

    Raises
    ------
    ConfigError
        An item without ``=`` or with an empty key part, a path through a value that is
        not a mapping, or (with ``name``) a key the schema does not allow.
    """
    out = copy.deepcopy(dict(section))
    node = schema().get("properties", {}).get(name) if name else None
    for key, value in options.items():
        if value is not None:
            _set_path(out, key, list(value) if isinstance(value, tuple) else value, node, name)
    for item in set_items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        _set_path(out, key.strip(), value, node, name, item=item)
    return out


def _set_path(
    target: dict[str, Any],
    key: str,
    value: Any,
    node: Mapping[str, Any] | None,
    name: str,
    *,
    item: str | None = None,
) -> None:
    """Set ``target[a][b]... = value`` for ``key`` ``a.b...``, checking keys against ``node``."""
    what = f"--set {item!r}: " if item is not None else ""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{what}empty key part in {key!r}")
    for depth, part in enumerate(parts):
        path = ".".join(filter(None, [name, *parts[: depth + 1]]))
        if node is not None and "properties" in node:
            allowed = node["properties"]
            if part not in allowed and node.get("additionalProperties") is False:
                raise ConfigError(
                    f"{what}unknown key '{path}' (allowed here: {', '.join(sorted(allowed))})"
                )
            node = allowed.get(part)
        else:
            node = None
        if depth == len(parts) - 1:
            target[part] = value
            return
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{what}key '{path}' holds {child!r}, not a mapping")
        target = child


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a (validated) config, for tracking tags."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def require_file(path: str | Path, what: str = "input") -> Path:
    """Return ``path`` if it is an existing file, else raise a one-line :class:`UserError`."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found", path=p)
    if not p.is_file():
        raise UserError(f"{what} is not a file", path=p)
    return p
