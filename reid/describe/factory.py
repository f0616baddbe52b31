"""Build a describer (rules, oracle or MLLM) from :class:`DescribeConfig`."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from reid.describe.config import DescribeConfig
from reid.describe.mllm import ApiKey, MLLMDescriber, Pricing, create_chat_client, read_api_key
from reid.describe.retry import RetryPolicy
from reid.describe.rules import RuleDescriber
from reid.describe.schema import Description
from reid.describe.validation import ValidationRules
from reid.describe.vocabulary import load_vocabulary


class Describer(Protocol):
    """What the describe job needs: who made the rows, and rows for one image record."""

    provenance: str
    model: str
    prompt_version: str

    def describe(self, record: Mapping[str, Any], style_id: int = -1) -> Description | list[Description]: ...


def describe_record(describer: Describer, record: Mapping[str, Any], style_id: int,
                    exemplars: Sequence[str]) -> list[Description]:
    """The rows a describer gives for ``record``, always as a list (MLLM: with the style exemplars)."""
    if isinstance(describer, MLLMDescriber):
        out = describer.describe(record, style_id, exemplars)
    else:
        out = describer.describe(record, style_id)
    return list(out) if isinstance(out, (list, tuple)) else [out]


class OracleAdapter:
    """:class:`reid.describe.oracle.OracleDescriber` behind the :class:`Describer` protocol.

    Reads the record's ground-truth ``attributes`` (synthetic data); the oracle's rows are not re-validated.
    """

    def __init__(self, drop_prob: float, wrong_prob: float, seed: int) -> None:
        oracle = importlib.import_module("reid.describe.oracle")
        self.oracle = oracle.OracleDescriber(drop_prob=drop_prob, wrong_prob=wrong_prob, seed=seed)
        self.provenance, self.model = oracle.PROVENANCE, oracle.MODEL
        self.prompt_version = f"{oracle.PROMPT_VERSION}-d{drop_prob:g}-w{wrong_prob:g}-s{seed}"

    def describe(self, record: Mapping[str, Any], style_id: int = -1) -> Description:
        row = self.oracle.describe(record["image_id"], record["attributes"])
        return dataclasses.replace(row, prompt_version=self.prompt_version, style_id=style_id)


def build_validation_rules(cfg: DescribeConfig) -> ValidationRules:
    return ValidationRules(cfg.min_chars, cfg.max_chars, cfg.min_identity_attributes)


def build_rule_describer(cfg: DescribeConfig) -> RuleDescriber:
    return RuleDescriber(load_vocabulary(cfg.vocab_dir), build_validation_rules(cfg))


def build_describer(cfg: DescribeConfig, api_key: ApiKey | None = None) -> Describer:
    """The describer for ``cfg.backend`` (``oracle`` needs synthetic data with ground-truth attributes).

    The MLLM's key is ``api_key`` when given (handed over by a driver), else read from ``cfg.api_key_env``.
    """
    if cfg.backend == "rules":
        return build_rule_describer(cfg)
    if cfg.backend == "oracle":
        return OracleAdapter(cfg.oracle_drop_prob, cfg.oracle_wrong_prob, cfg.oracle_seed)
    client = create_chat_client(cfg.base_url, api_key or read_api_key(cfg.api_key_env), cfg.timeout_s)
    return MLLMDescriber(
        client, cfg.model, load_vocabulary(cfg.vocab_dir), build_validation_rules(cfg),
        RetryPolicy(cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s),
        temperature=cfg.temperature, max_tokens=cfg.max_tokens, json_mode=cfg.json_mode,
        part_mode=cfg.part_mode, max_validation_retries=cfg.max_validation_retries,
        pricing=Pricing(cfg.prompt_price_per_mtok, cfg.completion_price_per_mtok),
        fallback=build_rule_describer(cfg) if cfg.fallback_to_rules else None,
    )
