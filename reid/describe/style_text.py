"""Content masking before style embedding: vocabulary words become their category, punctuation stays.

The paper has an MLLM rewrite each caption with generalised entity attributes so that the embedding
follows expression style rather than content. Offline we do it deterministically: every vocabulary
term (longest match first) is replaced by one placeholder word per category, so "A tall man in a red
coat." becomes "a trait person in a colour garment ." and captions of one writing style look alike
whatever person they describe.
"""

from __future__ import annotations

import re

from reid.describe.vocabulary import Vocabulary

PLACEHOLDERS = {"gender": "person", "identity": "trait", "garments": "garment", "colours": "colour",
                "clothing_attributes": "detail"}
_TOKEN = re.compile(r"[a-z]+|[^\sa-z]")
_HYPHEN = re.compile(r"(?<=[a-z])-(?=[a-z])")


def mask_content(caption: str, vocab: Vocabulary) -> str:
    """``caption`` lower-cased with each vocabulary term replaced by its category's placeholder."""
    tokens = _TOKEN.findall(_HYPHEN.sub(" ", caption.lower()))  # "t-shirt" matches the term "t shirt"
    sets = [(PLACEHOLDERS[name], getattr(vocab, name)) for name in PLACEHOLDERS]
    longest = max(s.max_len for _, s in sets)
    out, i = [], 0
    while i < len(tokens):
        match = None
        if tokens[i].isalpha():
            for n in range(min(longest, len(tokens) - i), 0, -1):
                window = tuple(tokens[i:i + n])
                if not all(t.isalpha() for t in window):
                    continue
                match = next((word for word, terms in sets if window in terms.terms), None)
                if match:
                    i += n
                    break
        if match is None:
            match = tokens[i]
            i += 1
        out.append(match)
    return " ".join(out)
