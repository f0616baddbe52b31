"""Load a :class:`Config` from YAML files plus ``key=value`` overrides, and dump it back."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from reid.config.schema import Config
from reid.config.typecheck import ConfigError, build_dataclass, field_type

PACKAGED_PREFIX = "pkg://"
MOVED_KEYS = {
    "loss.image_decoding": "model.image_decoding.strategy",
    "loss.image_decoding_mask_ratio": "model.image_decoding.mask_ratio",
}
"""Settings that moved (old dotted key -> new): the old key still loads, read as the new one, with one warning."""

log = logging.getLogger(__name__)
_warned: set[str] = set()


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read ``path`` (a YAML file, ``pkg://NAME`` for a packaged config, or None for defaults).

    ``overrides`` are ``dotted.key=value`` strings whose values are parsed as YAML scalars.
    Every key and type is checked before anything runs; errors name the key and the file.
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(str(path))
    data = apply_overrides(move_keys(data, source), parse_overrides(overrides))
    return build_dataclass(Config, data, "", source)


def config_from_dict(data: Mapping[str, Any], source: str) -> Config:
    """The :class:`Config` of nested ``data`` (a parsed YAML file, a checkpoint's ``config.yaml``), keys that
    moved (:data:`MOVED_KEYS`) read at their new place; ``source`` names it in errors."""
    return build_dataclass(Config, move_keys(data, source), "", source)


def current_key(key: str) -> str:
    """``key``, or the key it moved to (:data:`MOVED_KEYS`), with a deprecation warning once per process."""
    new = MOVED_KEYS.get(key)
    if new is None:
        return key
    if key not in _warned:
        _warned.add(key)
        log.warning("config key '%s' is deprecated: it is now '%s' (read as that)", key, new)
    return new


def move_keys(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A copy of nested ``data`` with each old key of :data:`MOVED_KEYS` at its new place (both: an error)."""
    out = copy.deepcopy(dict(data))
    for old, new in MOVED_KEYS.items():
        *path, name = old.split(".")
        parent = _node(out, path)
        if parent is None or name not in parent:
            continue
        *new_path, new_name = new.split(".")
        if new_name in (_node(out, new_path) or {}):
            raise ConfigError(f"{source}: '{old}' and '{new}' are one setting (the first is its old name); "
                              f"give only '{new}'")
        out = apply_overrides(out, {current_key(old): parent.pop(name)})
    return out


def _node(data: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The mapping at ``path`` in nested ``data``, or None when some part is missing or not a mapping."""
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def packaged_configs() -> list[str]:
    """The names ``pkg://NAME`` can load."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("reid.configs").iterdir()
                  if p.name.endswith(".yaml"))


def _read_yaml(path: str) -> dict[str, Any]:
    if path.startswith(PACKAGED_PREFIX):
        name = path[len(PACKAGED_PREFIX):]
        file = resources.files("reid.configs").joinpath(f"{name}.yaml")
        if not file.is_file():
            raise ConfigError(f"no packaged config '{path}'; packaged: "
                              + ", ".join(PACKAGED_PREFIX + n for n in packaged_configs()))
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {path}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML text file (byte {exc.start} is not UTF-8)") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``["a.b=1", "c=x"]`` into ``{"a.b": 1, "c": "x"}`` checking each key against the schema."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = current_key(key.strip())
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        field_type(Config, key)
        parsed[key] = yaml.safe_load(raw) if raw.strip() else ""
    return parsed


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with each dotted key of ``overrides`` set."""
    out = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (tuples become lists), ready for YAML or JSON."""
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(config)


def dump_config(config: Any) -> str:
    """The resolved config as YAML; ``load_config`` of this text gives an equal config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def flatten_config(config: Any) -> dict[str, Any]:
    """``{"optim.lr": 1e-4, ...}``: the config flattened to dotted keys (for MLflow params)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = node

    walk("", config_to_dict(config))
    return flat


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """A new config with dotted ``overrides`` applied and re-validated (used by Ray Tune trials)."""
    overrides = {current_key(key): value for key, value in overrides.items()}
    for key in overrides:
        field_type(Config, key)
    data = apply_overrides(config_to_dict(config), overrides)
    return build_dataclass(Config, data, "", "<overrides>")
