"""Parse an MLLM answer into identity, clothing and part phrases; failures carry a reason for a re-ask."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from reid.data.parts import PARTS

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)
_ABSENT = {"", "none", "no", "n/a", "null", "not visible", "nothing"}


class AnswerError(ValueError):
    """The answer does not follow the JSON schema; the message is the reason shown to the model."""


@dataclass(frozen=True)
class Answer:
    identity: str
    clothing: str
    parts: dict[str, str] = field(default_factory=dict)


def clean_part_phrase(text: str | None) -> str | None:
    """A part answer without quotes/full stop, or None when it says the part is absent."""
    if text is None:
        return None
    phrase = " ".join(str(text).split()).strip(" .\"'")
    return None if phrase.lower() in _ABSENT else phrase


def parse_answer(text: str) -> Answer:
    """Read ``{"identity": str, "clothing": str, "parts": {part: str | null}}`` (parts optional).

    Code fences are tolerated; part names outside :data:`PARTS` and absent parts are left out.
    """
    body = _FENCE.sub("", (text or "").strip())
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"the answer is not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(value, dict):
        raise AnswerError("the answer must be a JSON object")
    for key in ("identity", "clothing"):
        if not isinstance(value.get(key), str):
            raise AnswerError(f'the answer needs a string field "{key}"')
    raw_parts = value.get("parts") or {}
    if not isinstance(raw_parts, dict):
        raise AnswerError('"parts" must be a JSON object mapping a part name to a phrase')
    parts = {}
    for name in PARTS:
        phrase = clean_part_phrase(raw_parts.get(name))
        if phrase:
            parts[name] = phrase
    return Answer(" ".join(value["identity"].split()), " ".join(value["clothing"].split()), parts)
