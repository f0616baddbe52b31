"""The output schema every describer (mllm, oracle, rules) writes: one :class:`Description` per image."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from reid.data.parts import PARTS

PROVENANCES = ("mllm", "oracle", "rules")
"""``mllm``: from the image by a multimodal model; ``oracle``: from the image's ground-truth attributes
(synthetic data); ``rules``: from the human captions (may supervise training only, never a gallery)."""

DESCRIPTION_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("identity", pa.string()),
        ("clothing", pa.string()),
        ("parts", pa.string()),
        ("provenance", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("style_id", pa.int64()),
        ("quarantined", pa.bool_()),
        ("reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Description:
    """One image's identity and clothing descriptions plus how they were made.

    ``parts`` maps a name of :data:`PARTS` to a short phrase. ``style_id`` is the caption style whose
    exemplars were in the prompt (-1 when none). ``quarantined`` rows failed validation after every
    retry; ``reason`` says why (empty otherwise). Token counts and cost are 0 for oracle/rules.
    """

    image_id: str
    identity: str
    clothing: str
    provenance: str
    model: str = ""
    prompt_version: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    style_id: int = -1
    quarantined: bool = False
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(f"image '{self.image_id}': provenance must be one of {PROVENANCES}, "
                             f"got {self.provenance!r}")
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"image '{self.image_id}': unknown part '{unknown[0]}' (known: {PARTS})")

    def to_row(self) -> dict[str, Any]:
        """A dict with the columns of :data:`DESCRIPTION_SCHEMA` (``parts`` as a JSON string)."""
        row = asdict(self)
        row["parts"] = json.dumps(dict(self.parts), sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Description:
        """Inverse of :meth:`to_row`; ``parts`` may be a JSON string or a mapping."""
        values = {name: row[name] for name in DESCRIPTION_SCHEMA.names}
        parts = values["parts"]
        values["parts"] = json.loads(parts) if isinstance(parts, str) and parts else dict(parts or {})
        return cls(**values)


def descriptions_table(descriptions: Iterable[Description]) -> pa.Table:
    """A pyarrow table with :data:`DESCRIPTION_SCHEMA` holding ``descriptions`` in order."""
    rows = [d.to_row() for d in descriptions]
    return pa.Table.from_pylist(rows, schema=DESCRIPTION_SCHEMA)
