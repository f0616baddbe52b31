"""Search spaces as data: dotted config keys mapped to distributions, read from YAML and checked against the schema.

A space file (``tune_spaces/*.yaml``)::

    description: what the search is for
    fixed:                       # optional: overrides applied to every trial
      train.epochs: 20
    params:                      # optional: one distribution per dotted config key
      optim.lr: {loguniform: [1.0e-5, 1.0e-3]}
      data.batch.p: {choice: [8, 16, 32]}
      loss.triplet: {grid: [true, false]}
    variants:                    # optional: named override sets, searched as one grid axis
      full: {}
      no_gate: {model.bdam.gate: false}

Distributions: ``choice`` and ``grid`` (lists of values of the field's type), ``uniform`` and
``loguniform`` (``[low, high]`` floats, for float fields), ``randint`` (``[low, high)`` integers).
Everything is checked before any trial starts; errors name the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from reid.config import Config, ConfigError
from reid.config.loader import current_key, with_overrides
from reid.config.typecheck import coerce, field_type

KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
VARIANT = "variant"
TOP_LEVEL = ("description", "fixed", "params", "variants")


class SpaceError(ConfigError):
    """A search space is malformed or does not fit the config schema; the message names the key."""


@dataclass(frozen=True)
class Distribution:
    """One searched key: ``kind`` with its ``values`` (choice, grid) or its ``low``/``high`` bounds."""

    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    def representatives(self) -> tuple[Any, ...]:
        """Values that every draw lies between: all listed values, or the two bounds (randint: high - 1)."""
        if self.values:
            return self.values
        if self.kind == "randint":
            return (int(self.low), int(self.high) - 1)
        return (float(self.low), float(self.high))


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space: ``params`` (key -> distribution), ``variants`` (name -> overrides) and ``fixed``."""

    name: str
    source: str
    description: str = ""
    params: dict[str, Distribution] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)

    def has_grid(self) -> bool:
        return bool(self.variants) or any(d.kind == "grid" for d in self.params.values())

    def candidates(self) -> list[tuple[str, dict[str, Any]]]:
        """``(where, overrides)`` of every setting a trial may run with, for checks before the search: the fixed
        overrides, each variant on top of them, and each representative value of each param on top of them."""
        out = [("fixed", dict(self.fixed))]
        out += [(f"variant '{name}'", {**self.fixed, **overrides}) for name, overrides in self.variants.items()]
        out += [(f"'{key}' = {value!r}", {**self.fixed, key: value}) for key, dist in self.params.items()
                for value in dist.representatives()]
        return out

    def searched_keys(self) -> list[str]:
        """The columns of a search summary: ``variant`` (when there are variants) then the param keys."""
        return ([VARIANT] if self.variants else []) + list(self.params)

    def trial_overrides(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """The dotted overrides of one trial: ``fixed``, then its variant's overrides, then its drawn params."""
        out = dict(self.fixed)
        if self.variants:
            name = sample.get(VARIANT)
            if name not in self.variants:
                raise SpaceError(f"{self.source}: unknown variant {name!r} (known: {sorted(self.variants)})")
            out.update(self.variants[name])
        out.update({k: v for k, v in sample.items() if k != VARIANT})
        return out

    def fingerprint(self) -> str:
        """A short hash of the space's content (a resumed search must search the same space)."""
        body = {"fixed": self.fixed, "variants": self.variants,
                "params": {k: [d.kind, list(d.values), d.low, d.high] for k, d in self.params.items()}}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


PACKAGED_PREFIX = "pkg://"


def packaged_spaces() -> list[str]:
    """The names ``pkg://NAME`` loads (the spaces shipped in the package, also at ``tune_spaces/`` in the repo)."""
    from importlib import resources

    return sorted(p.name.removesuffix(".yaml") for p in resources.files("reid.spaces").iterdir()
                  if p.name.endswith(".yaml"))


def load_space(path: str | Path) -> SearchSpace:
    """Read and parse a space file, or ``pkg://NAME`` for a shipped one (the schema check is
    :func:`validate_space`)."""
    if str(path).startswith(PACKAGED_PREFIX):
        from importlib import resources

        name = str(path)[len(PACKAGED_PREFIX):]
        if name not in packaged_spaces():
            raise SpaceError(f"no packaged search space '{path}'; packaged: "
                             + ", ".join(PACKAGED_PREFIX + n for n in packaged_spaces()))
        return parse_space(yaml.safe_load(resources.files("reid.spaces").joinpath(f"{name}.yaml").read_text()),
                           str(path), name)
    file = Path(path)
    if not file.is_file():
        raise SpaceError(f"search space file not found: {path}")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {exc}") from exc
    return parse_space(data, str(path), file.stem)


def parse_space(data: Any, source: str, name: str = "space") -> SearchSpace:
    """A :class:`SearchSpace` from the plain mapping of a space file; shape errors name the key."""
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: a search space must be a mapping with 'params' and/or 'variants'")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key '{unknown[0]}' (known: {', '.join(TOP_LEVEL)})")
    params = {str(k): parse_distribution(v, k, source) for k, v in _mapping(data, "params", source).items()}
    variants = {str(k): dict(_mapping(_mapping(data, "variants", source), str(k), source))
                for k in _mapping(data, "variants", source)}
    if not params and not variants:
        raise SpaceError(f"{source}: the space searches nothing (give 'params' or 'variants')")
    if VARIANT in params:
        raise SpaceError(f"{source}: '{VARIANT}' is reserved for the 'variants' axis")
    fixed = dict(_mapping(data, "fixed", source))
    return SearchSpace(name, source, str(data.get("description") or ""), params, variants, fixed)


def _mapping(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpaceError(f"{source}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def parse_distribution(spec: Any, key: str, source: str) -> Distribution:
    """``{kind: args}`` -> :class:`Distribution`, checking the arguments' shape (not yet the field's type)."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise SpaceError(f"{source}: '{key}' must be one of {{{' | '.join(KINDS)}: ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise SpaceError(f"{source}: '{key}': {kind} needs a non-empty list of values, got {args!r}")
        return Distribution(kind, tuple(args))
    if not (isinstance(args, list) and len(args) == 2 and all(_is_number(a) for a in args)):
        raise SpaceError(f"{source}: '{key}': {kind} needs [low, high] numbers, got {args!r}")
    low, high = args
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SpaceError(f"{source}: '{key}': randint bounds must be integers, got {args!r}")
    if not low < high:
        raise SpaceError(f"{source}: '{key}': {kind} needs low < high, got {args!r}")
    if kind == "loguniform" and not low > 0:
        raise SpaceError(f"{source}: '{key}': loguniform needs low > 0, got {args!r}")
    return Distribution(kind, (), low, high)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_space(space: SearchSpace, base: Config) -> None:
    """Check every key and value of ``space`` against the schema and ``base`` before any trial runs.

    Each key must name a config field (not a section); ``uniform``/``loguniform`` need a float field,
    ``randint`` an integer (or float) field, ``choice``/``grid`` values the field's type; and each listed
    value, each bound and each variant must give a valid config (field constraints included).
    """
    for key in space.fixed:
        _check_key(key, space.source, "fixed")
    for name, overrides in space.variants.items():
        for key in overrides:
            _check_key(key, space.source, f"variant '{name}'")
            if key in space.params:
                raise SpaceError(f"{space.source}: '{key}' is set by variant '{name}' and searched in 'params'")
    for key, dist in space.params.items():
        _check_kind(key, dist, _check_key(key, space.source, "params"), space.source)
    for where, overrides in space.candidates():
        _check_config(base, overrides, f"{space.source}: {where}")


def _check_key(key: str, source: str, where: str) -> Any:
    try:
        tp = field_type(Config, current_key(key))
    except ConfigError as exc:
        raise SpaceError(f"{source}: {where}: {exc}") from exc
    if is_dataclass(tp):
        raise SpaceError(f"{source}: {where}: '{key}' is a config section, not a field")
    return tp


def _check_kind(key: str, dist: Distribution, tp: Any, source: str) -> None:
    if dist.kind in ("choice", "grid"):
        for value in dist.values:
            try:
                coerce(tp, value, key, source)
            except ConfigError as exc:
                raise SpaceError(f"{exc} (a {dist.kind} value)") from exc
        return
    probe: Any = float(dist.low) if dist.kind in ("uniform", "loguniform") else int(dist.low)
    try:
        coerce(tp, probe, key, source)
    except ConfigError as exc:
        draws = "floats" if isinstance(probe, float) else "integers"
        raise SpaceError(f"{source}: '{key}': {dist.kind} draws {draws}, but the field is {_type_name(tp)}") from exc


def _check_config(base: Config, overrides: dict[str, Any], where: str) -> None:
    try:
        with_overrides(base, overrides)
    except ConfigError as exc:
        raise SpaceError(f"{where}: {exc}") from exc


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return f"one of {list(typing.get_args(tp))}"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
