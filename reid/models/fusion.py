"""Token-level fusion of gated identity tokens with identity-description tokens (paper 3.4, DESIGN 3.3).

Paper 3.4: MLPs align ``f_id^gate`` and ``f_id^t`` to ``f_img``, ``f_txt``;
``g_fus = Softmax(W_f [f_img; f_txt])`` gives ``w_img + w_txt = 1``; ``f_fusion = w_img f_img + w_txt f_txt``;
``f^(l+1) = Mamba(f^(l)) + f^(l)``; a projection gives ``f_final [B, D_out]``.

Here both features stay token sequences. The gate reads their masked-mean-pooled aligned features (before
any mixing, the paper's pre-fusion gate). The unweighted sequence ``[image tokens ; text tokens]`` (real
text tokens first, padding last) goes through pre-norm residual layers ``x + Layer(Norm(x))``, where the
modalities interact; a final per-token norm and masked mean pooling over each modality's positions give
``f_img`` and ``f_txt``, and the gallery embedding is ``proj(w_img f_img + w_txt f_txt)``. The modality
weights are applied after the last normalisation, so nothing can undo them: ``w_img -> 0`` leaves only
what the text positions carry (the image only through the mixing), and the reverse. A weight applied to
the tokens before a pre-norm stack and a per-token norm is normalised away (the first build did that).

Layer kinds are the paper's table-2 rows: ``mamba`` (a bidirectional Mamba layer, a forward and a
reversed scan, so that image positions see the description too; a causal scan with image tokens first
never lets them), ``transformer`` (an encoder layer of equal width and depth), ``mlp`` (per token, no
sequence mixing: "w/o Mamba") and ``none`` (image tokens only, no layers: "baseline w/o fusion").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reid.models.config import FusionConfig
from reid.models.mamba import BidirectionalMamba

FUSION_KINDS = ("mamba", "transformer", "mlp", "none")


def _aligner(in_dim: int, width: int, mlp: bool, dropout: float) -> nn.Module:
    """``[.., in_dim] -> [.., width]``: an MLP (Linear-GELU-Dropout-Linear), or one Linear when ``mlp`` is off."""
    if not mlp:
        return nn.Linear(in_dim, width)
    return nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width))


class _Residual(nn.Module):
    """``x + Dropout(layer(LayerNorm(x)))`` for a token layer ``[B, L, W] -> [B, L, W]``."""

    def __init__(self, layer: nn.Module, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.layer = layer
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, L, W]``; ``mask [B, L]`` bool (real tokens first, padding last)."""
        if isinstance(self.layer, BidirectionalMamba):
            return x + self.dropout(self.layer(self.norm(x), mask))
        return x + self.dropout(self.layer(self.norm(x)))  # the "mlp" layer works per token


class _TransformerLayer(nn.Module):
    """A pre-norm Transformer encoder layer (``x + SA(LN(x))``, ``x + FF(LN(x))``) that ignores padding keys."""

    def __init__(self, width: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            width, heads, ff_mult * width, dropout, activation="gelu", batch_first=True, norm_first=True
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.layer(x, src_key_padding_mask=~mask)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens: ``x [B, L, W]``, ``mask [B, L]`` bool -> ``[B, W]`` (zeros for an empty row)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _padding_last(tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each row so real tokens come first (order kept) and padding last; ``[B, T, W]``, ``[B, T]``."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    tokens = torch.gather(tokens, 1, order.unsqueeze(-1).expand_as(tokens))
    return tokens, torch.gather(mask, 1, order)


@dataclass
class FusedSequence:
    """The fusion stack's output: ``tokens [B, L + T, W]`` (image positions first), ``mask [B, L + T]`` bool
    (real tokens; a row's text padding last) and the modality weights ``w_img``, ``w_txt`` ``[B]``."""

    tokens: Tensor
    mask: Tensor
    w_img: Tensor
    w_txt: Tensor


class FusionModule(nn.Module):
    """Fuse gated identity tokens and identity-description tokens into a gallery embedding (paper 3.4).

    Args:
        kind: ``"mamba"``, ``"transformer"``, ``"mlp"`` or ``"none"`` (see the module docstring).
        image_dim, text_dim: token widths of the image (BDAM) and text (encoder) sequences.
        width: width of the aligned sequence and of every layer; ``layers``: number of residual layers.
        d_state, d_conv, expand: the Mamba mixer's state size, convolution width and inner-width ratio
            (``expand`` is also the hidden ratio of the ``mlp`` layers).
        align: alignment MLPs (false: a single Linear per modality, the "no alignment MLP" ablation).
        gate: the softmax modality gate (false: fixed ``w_img = w_txt = 0.5``).
        dropout: dropout in the aligners and on every residual branch; ``out_dim``: embedding width.
        heads, ff_mult: the ``transformer`` layers' attention heads and feed-forward ratio.
    """

    def __init__(
        self,
        kind: str,
        image_dim: int,
        text_dim: int,
        width: int = 256,
        layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        align: bool = True,
        gate: bool = True,
        dropout: float = 0.1,
        out_dim: int = 256,
        heads: int = 4,
        ff_mult: int = 4,
        allow_slow_kernels: bool = False,
    ) -> None:
        super().__init__()
        if kind not in FUSION_KINDS:
            raise ValueError(f"fusion kind must be one of {FUSION_KINDS}; got {kind!r}")
        for name, value in (("image_dim", image_dim), ("text_dim", text_dim), ("width", width),
                            ("out_dim", out_dim), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if value < 1:
                raise ValueError(f"fusion {name} must be >= 1; got {value}")
        if layers < 0 or (kind in ("mamba", "transformer", "mlp") and layers < 1):
            raise ValueError(f"fusion kind {kind!r} needs layers >= 1; got {layers}")
        if kind == "transformer" and width % heads:
            raise ValueError(f"fusion width {width} is not divisible by heads {heads}")
        self.kind = kind
        self.image_dim, self.text_dim = image_dim, text_dim
        self.image_align = _aligner(image_dim, width, align, dropout)
        self.text_align = _aligner(text_dim, width, align, dropout) if kind != "none" else None
        self.gate = nn.Linear(2 * width, 2) if gate and kind != "none" else None
        self.layers = nn.ModuleList(
            [] if kind == "none" else [self._layer(kind, width, d_state, d_conv, expand, heads, ff_mult, dropout,
                                                   allow_slow_kernels) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    @staticmethod
    def _layer(kind: str, width: int, d_state: int, d_conv: int, expand: int, heads: int, ff_mult: int,
               dropout: float, allow_slow: bool) -> nn.Module:
        if kind == "transformer":
            return _TransformerLayer(width, heads, ff_mult, dropout)
        if kind == "mamba":
            mixer = BidirectionalMamba(width, d_state=d_state, d_conv=d_conv, expand=expand, allow_slow=allow_slow)
            return _Residual(mixer, width, dropout)
        mlp = nn.Sequential(nn.Linear(width, expand * width), nn.GELU(), nn.Dropout(dropout),
                            nn.Linear(expand * width, width))
        return _Residual(mlp, width, dropout)

    def forward(
        self,
        image_tokens: Tensor,
        text_tokens: Tensor | None = None,
        text_mask: Tensor | None = None,
        has_text: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Fuse ``image_tokens [B, L, image_dim]`` with ``text_tokens [B, T, text_dim]``.

        ``text_mask [B, T]`` (bool or 0/1, True = real token; default all real) and ``has_text [B]`` (False:
        no description, so ``w_img = 1``, ``w_txt = 0`` and the text tokens are ignored; default: rows with a
        real token). Returns ``embedding [B, out_dim]`` = ``proj(w_img f_img + w_txt f_txt)``, ``w_img [B]``,
        ``w_txt [B]``.
        """
        mixed = self.contextualise(image_tokens, text_tokens, text_mask, has_text)
        tokens = self.norm(mixed.tokens)
        length = image_tokens.shape[1]
        fused = tokens[:, :length].mean(1)
        if mixed.tokens.shape[1] > length:
            text = _masked_mean(tokens[:, length:], mixed.mask[:, length:])
            fused = mixed.w_img[:, None] * fused + mixed.w_txt[:, None] * text
        return {"embedding": self.proj(fused), "w_img": mixed.w_img, "w_txt": mixed.w_txt}

    def contextualise(
        self,
        image_tokens: Tensor,
        text_tokens: Tensor | None = None,
        text_mask: Tensor | None = None,
        has_text: Tensor | None = None,
    ) -> FusedSequence:
        """The aligned sequence ``[image ; text]`` after the residual layers, before the final norm, with
        the modality weights computed from it before mixing (arguments as :meth:`forward`)."""
        self._check(image_tokens, text_tokens, text_mask, has_text)
        image = self.image_align(image_tokens)
        nbatch, length = image.shape[:2]
        mask = torch.ones(nbatch, length, dtype=torch.bool, device=image.device)
        ones = image.new_ones(nbatch)
        if self.text_align is None or text_tokens is None:
            w_img, w_txt, sequence = ones, torch.zeros_like(ones), image
        else:
            text_mask = (torch.ones(text_tokens.shape[:2], dtype=torch.bool, device=image.device)
                         if text_mask is None else text_mask.to(device=image.device, dtype=torch.bool))
            present = text_mask.any(1) if has_text is None else has_text.to(image.device).bool() & text_mask.any(1)
            text_mask = text_mask & present[:, None]
            text, text_mask = _padding_last(self.text_align(text_tokens), text_mask)
            w_img, w_txt = self._modality_weights(image, text, text_mask, present)
            sequence = torch.cat([image, text], dim=1)
            mask = torch.cat([mask, text_mask], dim=1)
        for layer in self.layers:
            sequence = layer(sequence, mask)
        return FusedSequence(sequence, mask, w_img, w_txt)

    def _modality_weights(self, image: Tensor, text: Tensor, text_mask: Tensor, present: Tensor
                          ) -> tuple[Tensor, Tensor]:
        """Softmax gate over ``[pool(image); pool(text)]`` -> ``w_img, w_txt [B]``; ``(1, 0)`` without text."""
        if self.gate is None:
            weights = image.new_full((image.shape[0], 2), 0.5)
        else:
            pooled = torch.cat([image.mean(1), _masked_mean(text, text_mask)], dim=-1)
            weights = torch.softmax(self.gate(pooled), dim=-1)
        image_only = torch.tensor([1.0, 0.0], dtype=weights.dtype, device=weights.device)
        weights = torch.where(present[:, None], weights, image_only)
        return weights[:, 0], weights[:, 1]

    def _check(self, image_tokens: Tensor, text_tokens: Tensor | None, text_mask: Tensor | None,
               has_text: Tensor | None) -> None:
        if image_tokens.dim() != 3 or image_tokens.shape[-1] != self.image_dim:
            raise ValueError(f"fusion: image_tokens must be [B, L, {self.image_dim}]; got {tuple(image_tokens.shape)}")
        nbatch = image_tokens.shape[0]
        if text_tokens is not None and (text_tokens.dim() != 3 or text_tokens.shape[0] != nbatch
                                        or text_tokens.shape[-1] != self.text_dim):
            raise ValueError(f"fusion: text_tokens must be [B={nbatch}, T, {self.text_dim}]; got "
                             f"{tuple(text_tokens.shape)}")
        if text_mask is not None and (text_tokens is None or tuple(text_mask.shape) != tuple(text_tokens.shape[:2])):
            expected = None if text_tokens is None else tuple(text_tokens.shape[:2])
            raise ValueError(f"fusion: text_mask must be [B, T] = {expected}; got {tuple(text_mask.shape)}")
        if has_text is not None and tuple(has_text.shape) != (nbatch,):
            raise ValueError(f"fusion: has_text must be [B={nbatch}]; got {tuple(has_text.shape)}")


def build_fusion(cfg: FusionConfig, image_dim: int, text_dim: int, out_dim: int, dropout: float) -> FusionModule:
    """The fusion module of ``cfg`` (``model.fusion``) between encoders of the given token widths."""
    options: dict[str, Any] = {
        "width": cfg.width, "layers": cfg.layers, "d_state": cfg.d_state, "d_conv": cfg.d_conv,
        "expand": cfg.expand, "align": cfg.align, "gate": cfg.gate, "heads": cfg.heads, "ff_mult": cfg.ff_mult,
        "allow_slow_kernels": cfg.allow_slow_kernels,
    }
    return FusionModule(cfg.kind, image_dim, text_dim, dropout=dropout, out_dim=out_dim, **options)
