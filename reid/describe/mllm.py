"""MLLM describer: identity/clothing JSON (and part phrases) from any OpenAI-compatible chat endpoint."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from reid.data.parts import PARTS
from reid.describe.answer import AnswerError, clean_part_phrase, parse_answer
from reid.describe.prompts import dual_messages, part_messages, prompt_version, retry_messages
from reid.describe.retry import RetryPolicy, call_with_retries
from reid.describe.rules import RuleDescriber
from reid.describe.schema import Description
from reid.describe.validation import ValidationRules, valid_parts, validate_description, validate_part_phrase
from reid.describe.vocabulary import Vocabulary

log = logging.getLogger(__name__)
FATAL_STATUS = frozenset({401, 403, 404})


class EndpointFatalError(RuntimeError):
    """The endpoint refuses every request (bad key, no access, unknown model): stop the job."""


class ApiKey:
    """An API key that never shows itself in ``repr``/``str`` (logs, tracebacks, Ray task arguments)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__


def read_api_key(api_key_env: str) -> ApiKey:
    """The key in ``api_key_env``; ``ValueError`` naming the variable (never a value) when it is unset."""
    key = os.environ.get(api_key_env)
    if not key:
        raise ValueError(f"the describer needs an API key in the environment variable {api_key_env} "
                         "(any non-empty value for endpoints without authentication)")
    return ApiKey(key)


def create_chat_client(base_url: str | None, api_key: ApiKey, timeout_s: float) -> openai.OpenAI:
    """An ``openai.OpenAI`` client with the SDK's own retries off (:mod:`reid.describe.retry` retries)."""
    return openai.OpenAI(base_url=base_url, api_key=api_key.reveal(), max_retries=0, timeout=timeout_s)


@dataclass(frozen=True)
class Pricing:
    """US dollars per million prompt and completion tokens (estimates; defaults are gpt-4o list prices)."""

    prompt_per_mtok: float = 2.5
    completion_per_mtok: float = 10.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_mtok + completion_tokens * self.completion_per_mtok) / 1e6


@dataclass
class _Usage:
    prompt: int = 0
    completion: int = 0

    def add(self, completion: Any) -> None:
        usage = getattr(completion, "usage", None)
        self.prompt += int(getattr(usage, "prompt_tokens", 0) or 0)
        self.completion += int(getattr(usage, "completion_tokens", 0) or 0)


class MLLMDescriber:
    """Asks an MLLM for an identity and a clothing description of one image (paper 3.3).

    An answer that fails :func:`validate_description` is re-asked with the reason appended, at most
    ``max_validation_retries`` times; then the image is quarantined with the reason and, when a
    ``fallback`` is given, described by it as well (the fallback row follows the quarantined one).
    Transport errors are retried by :func:`call_with_retries`; when retries run out the error
    propagates and nothing is written, so a re-run asks again.
    """

    provenance = "mllm"

    def __init__(self, client: openai.OpenAI, model: str, vocab: Vocabulary, rules: ValidationRules,
                 retry: RetryPolicy, *, temperature: float = 0.2, max_tokens: int = 300,
                 json_mode: bool = True, part_mode: str = "joint", max_validation_retries: int = 2,
                 pricing: Pricing | None = None, fallback: RuleDescriber | None = None) -> None:
        if part_mode not in ("off", "joint", "separate"):
            raise ValueError(f"part_mode must be off, joint or separate, got {part_mode!r}")
        self.client, self.model, self.vocab, self.rules, self.retry = client, model, vocab, rules, retry
        self.temperature, self.max_tokens, self.json_mode = temperature, max_tokens, json_mode
        self.part_mode, self.max_validation_retries = part_mode, max_validation_retries
        self.pricing, self.fallback = pricing or Pricing(), fallback
        self.prompt_version = prompt_version(part_mode, json_mode)
        self._rng = random.Random()

    def _complete(self, messages: list[dict[str, Any]], what: str, json_answer: bool) -> Any:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                  "max_tokens": self.max_tokens}
        if json_answer and self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}

        def call() -> Any:
            try:  # the SDK's raw POST: the body is already plain JSON, so skip its per-call type transform
                return self.client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
            except openai.APIStatusError as exc:
                if exc.status_code in FATAL_STATUS:
                    raise EndpointFatalError(f"the endpoint answered {exc.status_code} for model "
                                             f"'{self.model}'; check base_url, model and the API key") from None
                raise

        return call_with_retries(call, self.retry, what, rng=self._rng)

    def _ask_dual(self, image: bytes, exemplars: Sequence[str], usage: _Usage, what: str) -> tuple[Any, str]:
        base = dual_messages(image, exemplars, self.part_mode == "joint", self.rules.min_chars,
                             self.rules.max_chars)
        messages, reason, usable = base, "", None
        for _ in range(self.max_validation_retries + 1):
            completion = self._complete(messages, what, json_answer=True)
            usage.add(completion)
            text = completion.choices[0].message.content or ""
            try:
                answer = parse_answer(text)
                reason = validate_description(answer.identity, answer.clothing, self.vocab, self.rules) or ""
            except AnswerError as exc:
                answer, reason = None, str(exc)
            if answer is not None and not reason:
                kept, rejected = valid_parts(answer.parts)
                if not rejected:
                    return answer, ""
                usable = replace(answer, parts=kept)  # the descriptions pass: kept if a re-ask does no better
                reason = next(iter(rejected.values()))
            log.debug("%s: answer rejected: %s", what, reason)
            messages = retry_messages(base, text, reason)
        if usable is not None:
            log.warning("%s: part phrases still invalid after %d re-asks (%s); kept the descriptions and the "
                        "valid phrases", what, self.max_validation_retries, reason)
            return usable, ""
        return None, reason

    def _ask_parts(self, image: bytes, usage: _Usage, what: str) -> dict[str, str]:
        parts = {}
        for part in PARTS:
            completion = self._complete(part_messages(image, part), f"{what}/{part}", json_answer=False)
            usage.add(completion)
            phrase = clean_part_phrase(completion.choices[0].message.content)
            if not phrase:
                continue
            reason = validate_part_phrase(part, phrase)
            if reason is None and len(phrase) <= self.rules.max_chars:
                parts[part] = phrase
            else:
                log.warning("%s/%s: part phrase left out: %s", what, part, reason or "too long")
        return parts

    def describe(self, record: Mapping[str, Any], style_id: int = -1,
                 exemplars: Sequence[str] = ()) -> list[Description]:
        """Rows for one image record (``image_id``, ``image`` bytes, ``captions`` for the fallback).

        One row when the answer validates; else a quarantined row, then the fallback's row if any.
        """
        what, usage = f"image {record['image_id']}", _Usage()
        try:
            answer, reason = self._ask_dual(record["image"], exemplars, usage, what)
            parts = {} if answer is None else dict(answer.parts)
            if answer is not None and self.part_mode == "separate":
                parts = self._ask_parts(record["image"], usage, what)
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409, 429):
                raise
            answer, reason, parts = None, f"the endpoint refused the request with status {exc.status_code}", {}
        row = Description(
            image_id=record["image_id"], identity=answer.identity if answer else "",
            clothing=answer.clothing if answer else "", provenance=self.provenance, model=self.model,
            prompt_version=self.prompt_version, parts=parts, style_id=style_id, quarantined=answer is None,
            reason=reason, prompt_tokens=usage.prompt, completion_tokens=usage.completion,
            cost_usd=self.pricing.cost(usage.prompt, usage.completion),
        )
        if answer is not None or self.fallback is None:
            return [row]
        return [row, self.fallback.describe(record, style_id)]
