"""Build frozen dataclasses from plain dicts, checking every key and type on the way."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type; the message names the key."""


def build_dataclass(cls: type, data: Any, path: str, source: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data`` (a mapping), recursing into nested dataclasses.

    ``path`` is the dotted key of ``data`` (``""`` at the root) and ``source`` names the file, both for
    error messages. Unknown keys and wrong types raise :class:`ConfigError`.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{path or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{source}: unknown key '{where}{unknown[0]}' (known keys here: {known})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(hints[name], value, _join(path, name), source)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: '{path or '<root>'}': {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{source}: '{path or '<root>'}': {exc}") from exc


def coerce(tp: Any, value: Any, path: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert it (lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path, source)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, path, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{source}: '{path}' may not be null")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{path}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(path, source, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, f"{path}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: '{path}' must have {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(coerce(a, v, f"{path}[{i}]", source) for i, (a, v) in pairs)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _type_error(path, source, "a mapping", value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(path, source, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, source, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, str):
            value = _float_or_none(value) if value.strip() else None
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(path, source, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(path, source, "a string", value)
        return value
    raise ConfigError(f"{source}: '{path}' has an unsupported annotation {tp!r}")


def _float_or_none(text: str) -> float | str:
    """YAML 1.1 reads ``3e-5`` (no dot) as a string; accept it as the number it means."""
    try:
        return float(text)
    except ValueError:
        return text


def _type_error(path: str, source: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{source}: '{path}' must be {expected}, got {value!r} ({type(value).__name__})")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def field_type(cls: type, dotted: str) -> Any:
    """The annotation of the field at ``dotted`` (e.g. ``"optim.lr"``) under dataclass ``cls``.

    Raises :class:`ConfigError` naming the first part that does not resolve.
    """
    tp: Any = cls
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"'{dotted}': '{'.'.join(walked[:-1])}' is not a section")
        hints = typing.get_type_hints(tp)
        if part not in hints:
            raise ConfigError(f"'{dotted}': unknown key '{'.'.join(walked)}'")
        tp = hints[part]
    return tp
