"""Chat prompts for the MLLM describer (dual description, SAP-SAM part prompts) and their version hash."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from reid.data.parts import PARTS

SYSTEM_PROMPT = (
    "You describe one pedestrian in a surveillance photo for a person re-identification dataset. "
    "Reply with one JSON object only, no prose and no code fences."
)

DUAL_TEMPLATE = (
    "Write two descriptions of the person in the image.\n"
    '- "identity": the traits that stay with the person whatever they wear: gender, age group, body type, '
    "height, hair (length, style, colour), skin tone. Do not mention any garment, shoe, bag or accessory.\n"
    '- "clothing": what the person wears and carries: garment types with their colours, patterns and '
    "materials, shoes, accessories, carried items.\n"
    "Each description is one sentence of {min_chars} to {max_chars} characters. Describe only what is "
    "visible; do not guess.{parts}{style}\n"
    'Answer as {{"identity": "...", "clothing": "..."{parts_key}}}.'
)

# SAP-SAM Table 3: one question per semantic part; the answer completes the given prefix.
PART_TEMPLATES: dict[str, tuple[str, str]] = {
    "hat": ("What kind of hat is this?", "It is"),
    "hair": ("What kind of hair is she?", "She has"),
    "glasses": ("What kind of glasses is this?", "It is"),
    "clothes": ("What kind of clothes is this?", "It is"),
    "skirt": ("What kind of skirt is this?", "It is"),
    "pants": ("What kind of pants is this?", "It is"),
    "dress": ("What kind of dress is this?", "It is"),
    "shoes": ("What shoes is she wearing?", "She is wearing"),
    "bag": ("What kind of bag is this?", "It is"),
}

JOINT_PARTS = (
    '\nAlso fill "parts": an object with one short phrase per visible part, answering each question '
    "(write the words that complete the answer; leave out parts the person does not have):\n{questions}"
)
SEPARATE_PART_TEMPLATE = (
    "Question: {question} Answer: {prefix} ...\n"
    "Complete the answer with a short phrase about the person in the image, or reply 'none' if the "
    "person has no {part}."
)
STYLE_BLOCK = (
    "\nWrite in the style of these example descriptions by one annotator: copy their wording, sentence "
    "shape and level of detail, never their content:\n{examples}"
)
PART_SYSTEM_PROMPT = "You answer questions about one pedestrian in a photo."
RETRY_TEMPLATE = "Your answer was rejected: {reason}. Answer again with the corrected JSON object only."


def prompt_version(part_mode: str, json_mode: bool) -> str:
    """A 12-hex-digit hash of every template and the settings that shape the prompt."""
    payload = json.dumps(
        [SYSTEM_PROMPT, DUAL_TEMPLATE, PART_TEMPLATES, JOINT_PARTS, SEPARATE_PART_TEMPLATE, STYLE_BLOCK,
         PART_SYSTEM_PROMPT, RETRY_TEMPLATE, part_mode, json_mode],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def image_data_url(image: bytes) -> str:
    """``data:image/<type>;base64,...`` for JPEG or PNG bytes; other formats are refused."""
    if image[:3] == b"\xff\xd8\xff":
        mime = "image/jpeg"
    elif image[:8] == b"\x89PNG\r\n\x1a\n":
        mime = "image/png"
    else:
        raise ValueError(f"image bytes are neither JPEG nor PNG (first bytes {image[:8]!r})")
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def _user_message(text: str, image: bytes) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": image_data_url(image)}},
        ],
    }


def dual_messages(image: bytes, exemplars: Sequence[str], joint_parts: bool, min_chars: int,
                  max_chars: int) -> list[dict[str, Any]]:
    """System + user messages asking for the identity/clothing JSON (and the parts when ``joint_parts``)."""
    parts, parts_key = "", ""
    if joint_parts:
        questions = "\n".join(f'- "{p}": Question: {q} Answer: {a} ...' for p, (q, a) in PART_TEMPLATES.items())
        parts, parts_key = JOINT_PARTS.format(questions=questions), ', "parts": {...}'
    style = STYLE_BLOCK.format(examples="\n".join(f"- {e}" for e in exemplars)) if exemplars else ""
    text = DUAL_TEMPLATE.format(min_chars=min_chars, max_chars=max_chars, parts=parts, style=style,
                                parts_key=parts_key)
    return [{"role": "system", "content": SYSTEM_PROMPT}, _user_message(text, image)]


def part_messages(image: bytes, part: str) -> list[dict[str, Any]]:
    """The SAP-SAM prompt of one part (Table 3) as chat messages."""
    if part not in PARTS:
        raise ValueError(f"unknown part '{part}' (known: {PARTS})")
    question, prefix = PART_TEMPLATES[part]
    text = SEPARATE_PART_TEMPLATE.format(question=question, prefix=prefix, part=part)
    return [{"role": "system", "content": PART_SYSTEM_PROMPT},
            _user_message(text, image)]


def retry_messages(messages: list[dict[str, Any]], answer: str, reason: str) -> list[dict[str, Any]]:
    """``messages`` followed by the rejected answer and the reason, for the next attempt."""
    return [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": RETRY_TEMPLATE.format(reason=reason)}]
