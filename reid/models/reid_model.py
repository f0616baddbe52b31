"""The T2I-ReID model: encoders, BDAM, fusion and projections; returns named features, computes no loss."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.bdam import Bdam
from reid.models.encoders import TextEncoder
from reid.models.image_backbone import ImageBackbone
from reid.models.image_decoding import ImageDecoder, patch_targets, random_patch_mask
from reid.models.part_regions import part_coverage


class ReidModel(nn.Module):
    """Query side: caption -> text encoder -> pooled -> ``text_proj`` -> ``[B, E]`` (DESIGN 3.4).

    Gallery side: image -> backbone tokens ``[B, L, D]`` (:mod:`reid.models.image_backbone`) -> BDAM (gated
    identity tokens) -> fusion with the identity description's tokens -> ``[B, E]``. Without BDAM
    (``bdam=None``) the encoder tokens go to fusion and their mean is ``f_id``. Score = cosine of the two embeddings.

    Images arrive as uint8 ``[B, 3, H, W]`` (or float in [0, 1]) and are normalised here with
    ``image_mean`` / ``image_std``. ``fusion`` is any module with the interface of
    :class:`reid.models.fusion.FusionModule`; ``fusion_uses_text=False`` skips encoding descriptions
    for it (the image-only "none" fusion).

    SAP-SAM's training-only heads: ``local_aligner`` (:mod:`reid.models.local_align`) scores part phrases
    against the patch tokens inside each part's region; ``image_decoder`` with ``image_decoding``
    (``after_pe`` | ``after_vit``) reconstructs a share ``mask_ratio`` of the patches, masked, from the caption.
    Neither touches the
    retrieval embeddings, so inference is the same with or without them.
    """

    def __init__(
        self,
        image_encoder: ImageBackbone,
        text_encoder: TextEncoder,
        bdam: Bdam | None,
        fusion: nn.Module,
        embed_dim: int,
        image_size: tuple[int, int],
        image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        image_std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        fusion_uses_text: bool = True,
        description_dropout: float = 0.0,
        local_aligner: nn.Module | None = None,
        image_decoder: ImageDecoder | None = None,
        image_decoding: str = "none",
        mask_ratio: float = 0.5,
        gallery_flip: bool = False,
    ) -> None:
        super().__init__()
        self.gallery_flip = gallery_flip
        if not 0.0 <= description_dropout < 1.0:
            raise ValueError(f"description_dropout must lie in [0, 1), got {description_dropout}")
        self.description_dropout = description_dropout
        self.pretrained_prefixes: tuple[str, ...] = ()  # parameter-name prefixes of pretrained parts (the factory's)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.bdam = bdam
        self.fusion = fusion
        self.fusion_uses_text = fusion_uses_text
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.embed_dim = embed_dim
        self.text_proj = nn.Linear(text_encoder.hidden_size, embed_dim)
        self.clo_proj = nn.Linear(image_encoder.hidden_size, embed_dim) if bdam is not None else None
        if (image_decoder is None) != (image_decoding == "none"):
            raise ValueError(f"image_decoding={image_decoding!r} needs an image_decoder exactly when it is not 'none'")
        self.local_aligner, self.image_decoder = local_aligner, image_decoder
        self.image_decoding, self.mask_ratio = image_decoding, mask_ratio
        self.register_buffer("pixel_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    # ----------------------------------------------------------------------------------------- training
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor | None]:
        """Named features of a batch (see the class and DESIGN 3); no loss.

        Reads ``images`` [B,3,H,W], ``caption_ids``/``caption_mask`` [B,T] and, when present,
        ``id_desc_ids``/``id_desc_mask``/``has_id_desc`` and ``clo_desc_ids``/``clo_desc_mask``/
        ``has_clo_desc``. Returns ``query_emb``, ``gallery_emb``, ``clo_proj``, ``clo_text_emb`` [B, E]
        (projections, not normalised); ``f_id_gate``, ``f_clo_gate``, ``bdam_gate`` [B, D];
        ``has_clo_desc``, ``w_img``, ``w_txt`` [B]. In training, when the gallery embedding fused descriptions,
        ``gallery_emb_image`` [B, E] is the embedding of the same images alone (else None: ``gallery_emb`` is
        that already), ``id_text_emb`` [B, E] the identity description through the query's text projection and
        ``has_id_desc`` [B] which rows have one. Clothing outputs are None without BDAM,
        ``bdam_gate`` without a gate, ``clo_text_emb`` when the batch has no clothing descriptions.
        ``clo_proj`` projects the ungated pooled clothing feature hat f_clo (eq. 1); ``clo_text_emb`` is
        the clothing description through the query's text projection (the same embedding space).
        Without BDAM, ``f_id_gate`` is the mean of the encoder tokens (so triplet still applies).

        With a local aligner and ``part_labels`` [B, H, W] / ``part_ids``, ``part_mask`` [B, C, Tp] in the batch:
        ``local_parts`` (:class:`~reid.models.local_align.PartScores`). In training with an image decoder:
        ``decoded``, ``decoded_target`` [B, L, 3 p^2] and ``decoded_mask`` [B, L].
        """
        images = _require(batch, "images")
        size = images.shape[0]
        texts = [(_require(batch, "caption_ids"), _require(batch, "caption_mask"))]
        id_desc = _description(batch, "id_desc", size) if self.fusion_uses_text else None
        if id_desc is not None and self.training and self.description_dropout > 0:
            kept = torch.rand(size, device=id_desc[2].device) >= self.description_dropout
            id_desc = (id_desc[0], id_desc[1], id_desc[2] & kept)
        clo_desc = _description(batch, "clo_desc", size) if self.bdam is not None else None
        texts += [desc[:2] for desc in (id_desc, clo_desc) if desc is not None]
        encoded = self._encode_text_batches(texts)
        if id_desc is not None:
            gallery = self._gallery(images, encoded[1][0], id_desc[1], id_desc[2])
        else:
            gallery = self._gallery(images, None, None, None)
        bdam_out = gallery["bdam"]
        clo_text_emb = self.text_proj(encoded[-1][1]) if clo_desc is not None else None
        has_clo = clo_desc[2] if clo_desc is not None else batch.get("has_clo_desc")
        if has_clo is None:
            has_clo = torch.zeros(size, dtype=torch.bool, device=images.device)
        clo_proj = self.clo_proj(bdam_out.f_clo) if bdam_out is not None and self.clo_proj is not None else None
        extra: dict[str, Any] = {"gallery_emb_image": None, "id_text_emb": None}
        if id_desc is not None and self.training:  # the same images alone: the gallery no MLLM has described
            extra["gallery_emb_image"] = self.fusion(gallery["id_tokens"], None, None, None)["embedding"]
            extra["id_text_emb"], extra["has_id_desc"] = self.text_proj(encoded[1][1]), id_desc[2]
        if self.local_aligner is not None and "part_labels" in batch:
            extra["local_parts"] = self._local_parts(self._grid_tokens(gallery["tokens"]), batch)
        if self.image_decoder is not None and self.training:
            extra.update(self._decode(images, self._grid_tokens(gallery["tokens"]), encoded[0][0], texts[0][1]))
        return {
            **extra,
            "query_emb": self.text_proj(encoded[0][1]),
            "gallery_emb": gallery["embedding"],
            "f_id_gate": gallery["f_id_gate"],
            "f_clo_gate": bdam_out.f_clo_gate if bdam_out is not None else None,
            "bdam_gate": bdam_out.gate if bdam_out is not None else None,
            "clo_proj": clo_proj,
            "clo_text_emb": clo_text_emb,
            "has_clo_desc": has_clo,
            "w_img": gallery["w_img"],
            "w_txt": gallery["w_txt"],
        }

    # ---------------------------------------------------------------------------------------- retrieval
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Query embeddings ``[N, E]``, L2-normalised, of token ids ``[N, T]``."""
        _, pooled = self.text_encoder(input_ids, attention_mask)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def encode_gallery(
        self,
        images: torch.Tensor,
        desc_ids: torch.Tensor | None = None,
        desc_mask: torch.Tensor | None = None,
        has_desc: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Gallery embeddings ``[N, E]``, L2-normalised, of images ``[N, 3, H, W]`` and optional
        identity-description ids/mask ``[N, T]`` (``has_desc [N]`` bool marks which rows have one).

        With ``gallery_flip``, the flip test of person re-identification: ``e = norm(norm(g(x)) + norm(g(x')))``
        with ``x'`` the image mirrored left to right (a person seen from the other side is the same person),
        both passes in one batch of ``2N``.
        """
        if self.gallery_flip:
            n = images.shape[0]
            both = self._encode_gallery(torch.cat([images, images.flip(-1)]), *(
                None if t is None else torch.cat([t, t]) for t in (desc_ids, desc_mask, has_desc)))
            return F.normalize(both[:n] + both[n:], dim=-1)
        return self._encode_gallery(images, desc_ids, desc_mask, has_desc)

    def _encode_gallery(
        self,
        images: torch.Tensor,
        desc_ids: torch.Tensor | None,
        desc_mask: torch.Tensor | None,
        has_desc: torch.Tensor | None,
    ) -> torch.Tensor:
        desc_tokens = None
        if desc_ids is not None and self.fusion_uses_text:
            if desc_mask is None:
                raise ValueError("encode_gallery: desc_ids given without desc_mask")
            if has_desc is None:
                has_desc = desc_mask.bool().any(dim=1)
            desc_tokens, _ = self.text_encoder(desc_ids, desc_mask)
        else:
            desc_mask = has_desc = None
        return F.normalize(self._gallery(images, desc_tokens, desc_mask, has_desc)["embedding"], dim=-1)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer every task's loss passes through, for GradNorm's per-task gradient norms.

        That is the image backbone's final LayerNorm (weight and bias): all image-side terms (InfoNCE
        through the gallery embedding, triplet, adversarial, HSIC, gate regularisation) read its output.
        """
        return list(self.image_encoder.final_norm.parameters())

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` (or float in [0, 1]) -> ``(x - mean) / std`` in the image encoder's parameter
        dtype (bf16 under DeepSpeed bf16, whatever the buffers' dtype), computed in fp32."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(
                f"images are {images.shape[-2]}x{images.shape[-1]} but the model was built for "
                f"{self.image_size[0]}x{self.image_size[1]} (data.image_size)"
            )
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        x = (x - self.pixel_mean.float()) / self.pixel_std.float()
        return x.to(next(self.image_encoder.parameters()).dtype)

    # ---------------------------------------------------------------------------------------- internals
    def _gallery(
        self,
        images: torch.Tensor,
        desc_tokens: torch.Tensor | None,
        desc_mask: torch.Tensor | None,
        has_desc: torch.Tensor | None,
    ) -> dict[str, Any]:
        tokens = self.image_encoder(self.normalize_images(images))
        if self.bdam is not None:
            bdam_out = self.bdam(tokens)
            id_tokens, f_id_gate = bdam_out.id_tokens, bdam_out.f_id_gate
        else:
            bdam_out, id_tokens, f_id_gate = None, tokens, tokens.mean(dim=1)
        fused = self.fusion(id_tokens, desc_tokens, desc_mask, has_desc)
        return {
            "embedding": fused["embedding"], "w_img": fused["w_img"], "w_txt": fused["w_txt"],
            "f_id_gate": f_id_gate, "bdam": bdam_out, "tokens": tokens, "id_tokens": id_tokens,
        }

    def _grid_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The grid cells' tokens ``[B, h*w, D]`` of the backbone's output (its prefix tokens, a ViT's [CLS], off)."""
        return tokens[:, self.image_encoder.prefix_tokens:]

    def _local_parts(self, patch_tokens: torch.Tensor, batch: Mapping[str, Any]) -> Any:
        """Pair scores of each part class (SAP-SAM Table 6) from patch tokens ``[B, L, D]`` and the batch's
        part labels and phrases; only the phrases of present parts go through the text encoder."""
        assert self.local_aligner is not None
        coverage = part_coverage(_require(batch, "part_labels"), self.image_encoder.patch_size)  # [B, C, L]
        ids, mask = _require(batch, "part_ids"), _require(batch, "part_mask")  # [B, C, Tp]
        b, c, t = ids.shape
        has = mask.bool().any(-1) & (coverage.sum(-1) > 0)  # [B, C]
        width = self.text_encoder.hidden_size
        phrases = patch_tokens.new_zeros(b * c, t, width)
        rows = has.flatten().nonzero().flatten()
        if len(rows):
            encoded, _ = self.text_encoder(ids.reshape(b * c, t)[rows], mask.reshape(b * c, t)[rows])
            phrases = phrases.index_copy(0, rows, encoded.to(phrases.dtype))
        phrase_mask = mask * has.unsqueeze(-1).to(mask.dtype)
        parts = self.local_aligner(patch_tokens, coverage.to(patch_tokens.dtype), phrases.view(b, c, t, width),
                                   phrase_mask)
        same = [(ids[r, k].unsqueeze(1) == ids[r, k].unsqueeze(0)).all(-1) for k, r in enumerate(parts.rows)]
        return replace(parts, positives=same)  # one outfit's images share a phrase: matches, not negatives

    def _decode(self, images: torch.Tensor, patch_tokens: torch.Tensor, caption_tokens: torch.Tensor,
                caption_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked image decoding (SAP-SAM Table 4): mask patches (after the patch embedding, through a second ViT
        pass, or on the ViT's output ``[B, L, D]``), decode them against the caption, return prediction, target
        (MAE-normalised pixels of the normalised image) and the mask."""
        assert self.image_decoder is not None
        b, length = patch_tokens.shape[:2]
        masked = random_patch_mask(b, length, self.mask_ratio, device=patch_tokens.device)
        pixels = self.normalize_images(images)
        if self.image_decoding == "after_pe":
            tokens = self._grid_tokens(self.image_encoder(pixels, masked_patches=masked))
        else:
            tokens = self.image_decoder.mask_features(patch_tokens, masked)
        predicted = self.image_decoder(tokens, caption_tokens.to(tokens.dtype), caption_mask)
        target = patch_targets(pixels.float(), self.image_encoder.patch_size[0])
        return {"decoded": predicted, "decoded_target": target, "decoded_mask": masked}

    def _encode_text_batches(
        self, texts: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Encode several ``(ids, mask)`` ``[B, T_i]`` pairs in one text-encoder call (padded to max T)."""
        length = max(ids.shape[1] for ids, _ in texts)
        ids = torch.cat([F.pad(i, (0, length - i.shape[1])) for i, _ in texts])
        mask = torch.cat([F.pad(m, (0, length - m.shape[1])) for _, m in texts])
        tokens, pooled = self.text_encoder(ids, mask)
        out, start = [], 0
        for i, _ in texts:
            n, t = i.shape
            out.append((tokens[start:start + n, :t], pooled[start:start + n]))
            start += n
        return out


def _require(batch: Mapping[str, Any], key: str) -> torch.Tensor:
    if key not in batch:
        raise KeyError(f"model batch is missing '{key}' (has: {', '.join(sorted(batch))})")
    return batch[key]


def _description(
    batch: Mapping[str, Any], prefix: str, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(ids, mask, has)`` of a description kind in the batch, or None when the batch has none."""
    if f"{prefix}_ids" not in batch:
        return None
    ids, mask = batch[f"{prefix}_ids"], _require(batch, f"{prefix}_mask")
    has = batch.get(f"has_{prefix}")
    if has is None:
        has = mask.bool().any(dim=1)
    if ids.shape[0] != size or has.shape != (size,):
        raise ValueError(f"'{prefix}_ids' {tuple(ids.shape)} / 'has_{prefix}' do not match batch size {size}")
    return ids, mask, has.bool()
