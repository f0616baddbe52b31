"""HSIC identity-clothing decoupling loss (eq. 2) with a linear or RBF kernel."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from reid.losses.checks import check_matrix
from reid.losses.triplet import squared_distances


def rbf_kernel(x: Tensor, sigma: float | None = None) -> Tensor:
    r"""Gaussian kernel :math:`K_{ij} = \exp(-\|x_i - x_j\|^2 / (2\sigma^2))` of x [N, D] as [N, N].

    ``sigma`` None uses the median heuristic: sigma is the median distance over pairs i < j, computed
    without gradient (the bandwidth is a constant); all-equal rows fall back to sigma = 1.
    """
    dist = squared_distances(x)
    if sigma is None:
        with torch.no_grad():
            upper = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
            median_sq = dist[upper[0], upper[1]].median()
            sigma_sq = median_sq if float(median_sq) > 0 else torch.ones_like(median_sq)
    else:
        sigma_sq = torch.tensor(float(sigma) ** 2, dtype=dist.dtype, device=dist.device)
    return torch.exp(-dist / (2.0 * sigma_sq))


def center(k: Tensor) -> Tensor:
    """H K H with H = I - 11^T/N, for K [N, N]: subtract row and column means, add the grand mean."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def hsic(x: Tensor, y: Tensor, kernel: Literal["linear", "rbf"] = "linear", sigma: float | None = None) -> Tensor:
    r"""Biased empirical HSIC (eq. 2): :math:`\frac{1}{(N-1)^2}\operatorname{tr}(K_x H K_y H)`.

    Eq. 2 applies it to the gated features: :math:`\mathcal{L}_{Decouple} = HSIC(f_{id}^{gate}, f_{clo}^{gate})`,
    with :math:`H = I_N - \frac1N \mathbf{1}\mathbf{1}^\top`. The linear kernel :math:`K = X X^\top` (the paper's)
    gives :math:`\|X_c^\top Y_c\|_F^2/(N-1)^2` with column-centred :math:`X_c, Y_c`; ``kernel="rbf"`` uses
    :func:`rbf_kernel` (``sigma`` None: median heuristic, per input). Zero for independent features in
    the large-N limit, larger with more shared signal. Computed as ``sum(HK_xH * K_y)``.

    x: [N, Dx]; y: [N, Dy] (rows paired), N >= 2. Returns a float32 scalar (float64 for float64 input).
    """
    check_matrix("hsic", "x", x)
    check_matrix("hsic", "y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"hsic: x and y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"hsic: needs at least 2 samples, got {n}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    if kernel == "linear":
        k_x, k_y = x @ x.t(), y @ y.t()
    elif kernel == "rbf":
        k_x, k_y = rbf_kernel(x, sigma), rbf_kernel(y, sigma)
    else:
        raise ValueError(f"hsic: kernel must be 'linear' or 'rbf', got {kernel!r}")
    return (center(k_x) * k_y).sum() / (n - 1) ** 2
