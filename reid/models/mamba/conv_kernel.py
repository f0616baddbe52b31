"""Numba CPU kernels: causal depthwise 1-D convolution over time followed by SiLU, channels-last.

``a_t = bias + sum_k W[k] * x_{t - K + 1 + k}`` (zeros before the start), ``out_t = a_t * sigmoid(a_t)``;
``x, out: [Bsz, L, D]``, ``Wt: [K, D]`` (the ``nn.Conv1d(D, D, K, groups=D)`` weight, transposed),
``bias: [D]``. Work items are (batch row, block of ``dblk`` channels); the inner loop runs over channels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from reid.models.mamba.fast_math import fast_sigmoid
from reid.models.mamba.scan_kernel import FASTMATH

FLUSH = 64
"""Time steps summed in the input dtype before the weight/bias gradients are added to float64 totals."""


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _conv_item(x, Wt, bias, out, b, d0, nd):  # pragma: no cover - compiled
    """One work item of :func:`conv_silu_forward`: batch row ``b``, channels ``d0 .. d0 + nd``."""
    length = x.shape[1]
    kernel = Wt.shape[0]
    wk = np.ascontiguousarray(Wt[:, d0 : d0 + nd])
    acc = np.empty(nd, dtype=x.dtype)
    for t in range(length):
        acc[:] = bias[d0 : d0 + nd]
        for k in range(max(0, kernel - 1 - t), kernel):
            xr = x[b, t - kernel + 1 + k, d0 : d0 + nd]
            for j in range(nd):
                acc[j] += wk[k, j] * xr[j]
        row = out[b, t, d0 : d0 + nd]
        for j in range(nd):
            row[j] = acc[j] * fast_sigmoid(acc[j])


@njit(cache=True, nogil=True, error_model="numpy")
def conv_silu_forward(x, Wt, bias, out, dblk, start, stop):  # pragma: no cover - compiled
    """Fill ``out [Bsz, L, D]`` for work items ``start .. stop`` of ``Bsz * ceil(D / dblk)``."""
    width = x.shape[2]
    nblk = (width + dblk - 1) // dblk
    for item in range(start, stop):
        d0 = (item % nblk) * dblk
        _conv_item(x, Wt, bias, out, item // nblk, d0, min(dblk, width - d0))


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _conv_grad_item(x, Wt, bias, gout, gx, gW, gbias, b, d0, nd):  # pragma: no cover - compiled
    """One work item of :func:`conv_silu_backward`: batch row ``b``, channels ``d0 .. d0 + nd``."""
    length = x.shape[1]
    kernel = Wt.shape[0]
    wk = np.ascontiguousarray(Wt[:, d0 : d0 + nd])
    acc = np.empty(nd, dtype=x.dtype)
    ga = np.empty(nd, dtype=x.dtype)
    gw = np.zeros((kernel, nd), dtype=np.float64)  # totals; the hot loop sums FLUSH steps in x.dtype
    gb = np.zeros(nd, dtype=np.float64)
    gwc = np.zeros((kernel, nd), dtype=x.dtype)
    gbc = np.zeros(nd, dtype=x.dtype)
    one = np.ones(1, dtype=x.dtype)[0]
    for t in range(length):
        acc[:] = bias[d0 : d0 + nd]
        for k in range(max(0, kernel - 1 - t), kernel):
            xr = x[b, t - kernel + 1 + k, d0 : d0 + nd]
            for j in range(nd):
                acc[j] += wk[k, j] * xr[j]
        go = gout[b, t, d0 : d0 + nd]
        for j in range(nd):
            s = fast_sigmoid(acc[j])
            ga[j] = go[j] * s * (one + acc[j] * (one - s))
            gbc[j] += ga[j]
        # x_{t-K+1+k} fed a_t through W[k]: scatter into rows t-K+1 .. t (row t is first touched here).
        gx[b, t, d0 : d0 + nd] = 0
        for k in range(max(0, kernel - 1 - t), kernel):
            tt = t - kernel + 1 + k
            xr = x[b, tt, d0 : d0 + nd]
            gr = gx[b, tt, d0 : d0 + nd]
            for j in range(nd):
                gr[j] += wk[k, j] * ga[j]
                gwc[k, j] += ga[j] * xr[j]
        if (t + 1) % FLUSH == 0 or t == length - 1:
            gw += gwc
            gb += gbc
            gwc[:] = 0
            gbc[:] = 0
    gW[b, :, d0 : d0 + nd] = gw
    gbias[b, d0 : d0 + nd] = gb


@njit(cache=True, nogil=True, error_model="numpy")
def conv_silu_backward(x, Wt, bias, gout, gx, gW, gbias, dblk, start, stop):  # pragma: no cover - compiled
    """Fill ``gx [Bsz, L, D]`` and the per-row partials ``gW [Bsz, K, D]``, ``gbias [Bsz, D]`` (work items
    ``start .. stop`` of ``Bsz * ceil(D / dblk)``)."""
    width = x.shape[2]
    nblk = (width + dblk - 1) // dblk
    for item in range(start, stop):
        d0 = (item % nblk) * dblk
        _conv_grad_item(x, Wt, bias, gout, gx, gW, gbias, item // nblk, d0, min(dblk, width - d0))
