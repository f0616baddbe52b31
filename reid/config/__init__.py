"""Typed configuration: frozen dataclasses loaded from YAML with dotted overrides."""

from reid.config.loader import ConfigError, dump_config, flatten_config, load_config, parse_overrides
from reid.config.schema import Config

__all__ = ["Config", "ConfigError", "dump_config", "flatten_config", "load_config", "parse_overrides"]
