"""The paper's encoder architectures as configs (random init; the pretrained weights come from the hub)."""

from __future__ import annotations

VIT_B16 = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
           "patch_size": 16}
"""``google/vit-base-patch16-224``'s architecture (paper 4.2)."""

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522, "max_position_embeddings": 512}
"""``bert-base-uncased``'s architecture (paper 4.2)."""
