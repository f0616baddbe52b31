"""Numba CPU kernels of Mamba's selective scan with softplus, skip and gate fused in (forward and backward).

``dt_t = softplus(delta_t + bias)``, ``h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t``,
``out_t = (C_t . h_t + D u_t) * silu(z_t)``. Layout is channels-last, as linear layers produce it:
``u, delta, z, out: [Bsz, L, D]``, ``At: [N, D]`` (A transposed), ``Bm, Cm: [Bsz, L, N]``,
``Dv, bias: [D]``. The ``[Bsz, L, D, N]`` states are never materialised: a work item owns one batch row
and a block of ``dblk`` channels, keeps their ``[N, dblk]`` state in a small local array and walks the
sequence; the innermost loops run over channels, so they vectorise without horizontal sums. The forward
pass stores the state before every ``chunk`` steps (``ckpt: [Bsz, ceil(L / chunk), N, D]``); the backward
pass walks the chunks in reverse, recomputes one chunk's states from its checkpoint into
``[chunk, N, dblk]`` scratch arrays and runs the adjoint recurrence ``g_t = C_t gy_t + exp(dt_{t+1} A) g_{t+1}``.

All kernels are ``nogil`` loops over a range of independent work items (see ``kernel_io.run_items``);
``error_model="numpy"`` keeps divisions free of Python's zero checks, so those loops vectorise too.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from reid.models.mamba.fast_math import fast_exp, fast_sigmoid, fast_softplus

# Reassociation and contraction let LLVM vectorise and fuse; nothing is assumed about NaN or inf.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _load_dt(delta, bias, softplus, b, t, d0, nd, dtt):  # pragma: no cover - compiled
    """``dtt[:nd] = softplus(delta[b, t, d0:d0+nd] + bias[d0:d0+nd])`` (no softplus when ``softplus`` is off)."""
    row = delta[b, t, d0 : d0 + nd]
    bb = bias[d0 : d0 + nd]
    if softplus:
        for j in range(nd):
            dtt[j] = fast_softplus(row[j] + bb[j])
    else:
        for j in range(nd):
            dtt[j] = row[j] + bb[j]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _forward_item(u, delta, bias, At, Bm, Cm, Dv, z, out, ckpt, softplus, chunk, b, d0, nd):  # pragma: no cover
    """One work item of :func:`scan_forward`: batch row ``b``, channels ``d0 .. d0 + nd``."""
    length = u.shape[1]
    nstate = At.shape[0]
    save = ckpt.shape[0] > 0
    gated = z.shape[0] > 0
    h = np.zeros((nstate, nd), dtype=u.dtype)
    ab = np.ascontiguousarray(At[:, d0 : d0 + nd])
    dv = np.ascontiguousarray(Dv[d0 : d0 + nd])
    du = np.empty(nd, dtype=u.dtype)
    dtt = np.empty(nd, dtype=u.dtype)
    acc = np.empty(nd, dtype=u.dtype)
    for t in range(length):
        if save and t % chunk == 0:
            ckpt[b, t // chunk, :, d0 : d0 + nd] = h
        ut = u[b, t, d0 : d0 + nd]
        _load_dt(delta, bias, softplus, b, t, d0, nd, dtt)
        for j in range(nd):
            du[j] = dtt[j] * ut[j]
            acc[j] = dv[j] * ut[j]
        for n in range(nstate):
            bn = Bm[b, t, n]
            cn = Cm[b, t, n]
            for j in range(nd):
                hn = fast_exp(dtt[j] * ab[n, j]) * h[n, j] + du[j] * bn
                h[n, j] = hn
                acc[j] += hn * cn
        row = out[b, t, d0 : d0 + nd]
        if gated:
            zt = z[b, t, d0 : d0 + nd]
            for j in range(nd):
                row[j] = acc[j] * zt[j] * fast_sigmoid(zt[j])
        else:
            row[:] = acc


@njit(cache=True, nogil=True, error_model="numpy")
def scan_forward(u, delta, bias, At, Bm, Cm, Dv, z, out, ckpt, softplus, chunk, dblk, start, stop):  # pragma: no cover
    """Fill ``out`` for work items ``start .. stop`` of ``Bsz * ceil(D / dblk)`` (batch row, channel block).

    No gate when ``z.shape[0] == 0``; checkpoints are stored when ``ckpt.shape[0] > 0``.
    """
    width = u.shape[2]
    nblk = (width + dblk - 1) // dblk
    for item in range(start, stop):
        d0 = (item % nblk) * dblk
        _forward_item(u, delta, bias, At, Bm, Cm, Dv, z, out, ckpt, softplus, chunk, item // nblk, d0,
                      min(dblk, width - d0))


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _backward_group(
    u, delta, bias, At, Bm, Cm, Dv, z, ckpt, gout, softplus, chunk, dblk, ngroups,
    gu, gdelta, gz, gA, gB, gC, gD, gbias, b, grp,
):  # pragma: no cover - compiled
    """One work item of :func:`scan_backward`: batch row ``b``, channel group ``grp`` (its blocks in turn)."""
    length, width = u.shape[1], u.shape[2]
    nstate = At.shape[0]
    nblk = (width + dblk - 1) // dblk
    nchunks = (length + chunk - 1) // chunk
    gated = z.shape[0] > 0
    hs = np.empty((chunk + 1, nstate, dblk), dtype=u.dtype)  # states h_{t0-1} .. h_{t1-1}
    aa = np.empty((chunk, nstate, dblk), dtype=u.dtype)  # decays exp(dt_t A)
    dts = np.empty((chunk, dblk), dtype=u.dtype)  # dt_t
    gys = np.empty((chunk, dblk), dtype=u.dtype)  # gradient of the pre-gate output C_t . h_t + D u_t
    carry = np.empty((nstate, dblk), dtype=u.dtype)  # exp(dt_{t+1} A) g_{t+1}
    gchunk = np.empty((nstate, dblk), dtype=u.dtype)
    gtotal = np.empty((nstate, dblk), dtype=np.float64)
    gdtotal = np.empty(dblk, dtype=np.float64)
    gbtotal = np.empty(dblk, dtype=np.float64)
    du = np.empty(dblk, dtype=u.dtype)
    sig = np.empty(dblk, dtype=u.dtype)
    gdu = np.empty(dblk, dtype=u.dtype)
    gdtt = np.empty(dblk, dtype=u.dtype)
    acc = np.empty(dblk, dtype=u.dtype)
    zero = np.zeros(1, dtype=u.dtype)[0]
    one = np.ones(1, dtype=u.dtype)[0]
    for blk in range(grp * nblk // ngroups, (grp + 1) * nblk // ngroups):
        d0 = blk * dblk
        nd = min(dblk, width - d0)
        ab = np.ascontiguousarray(At[:, d0 : d0 + nd])
        dv = np.ascontiguousarray(Dv[d0 : d0 + nd])
        bb = bias[d0 : d0 + nd]
        carry[:, :nd] = 0
        gtotal[:, :nd] = 0
        gdtotal[:nd] = 0
        gbtotal[:nd] = 0
        for k in range(nchunks - 1, -1, -1):
            t0 = k * chunk
            t1 = min(t0 + chunk, length)
            hs[0, :, :nd] = ckpt[b, k, :, d0 : d0 + nd]
            for t in range(t0, t1):  # recompute states and decays; the gradients that need no adjoint
                i = t - t0
                ut = u[b, t, d0 : d0 + nd]
                got = gout[b, t, d0 : d0 + nd]
                dtt = dts[i]
                _load_dt(delta, bias, softplus, b, t, d0, nd, dtt)
                for j in range(nd):
                    du[j] = dtt[j] * ut[j]
                    acc[j] = dv[j] * ut[j]
                if gated:
                    zt = z[b, t, d0 : d0 + nd]
                    for j in range(nd):
                        sig[j] = fast_sigmoid(zt[j])
                        gys[i, j] = got[j] * zt[j] * sig[j]
                else:
                    gys[i, :nd] = got
                for n in range(nstate):
                    bn = Bm[b, t, n]
                    cn = Cm[b, t, n]
                    sc = zero
                    for j in range(nd):
                        a = fast_exp(dtt[j] * ab[n, j])
                        aa[i, n, j] = a
                        hn = a * hs[i, n, j] + du[j] * bn
                        hs[i + 1, n, j] = hn
                        acc[j] += hn * cn
                        sc += gys[i, j] * hn
                    gC[b, grp, t, n] += sc
                for j in range(nd):
                    gdtotal[j] += gys[i, j] * ut[j]
                if gated:
                    gzt = gz[b, t, d0 : d0 + nd]
                    for j in range(nd):
                        gzt[j] = got[j] * acc[j] * sig[j] * (one + zt[j] * (one - sig[j]))
            gchunk[:, :nd] = 0
            for t in range(t1 - 1, t0 - 1, -1):  # adjoint recurrence, backwards in time
                i = t - t0
                ut = u[b, t, d0 : d0 + nd]
                dtt = dts[i]
                for j in range(nd):
                    du[j] = dtt[j] * ut[j]
                    gdu[j] = 0
                    gdtt[j] = 0
                for n in range(nstate):
                    bn = Bm[b, t, n]
                    cn = Cm[b, t, n]
                    sb = zero
                    for j in range(nd):
                        gh = carry[n, j] + cn * gys[i, j]
                        a = aa[i, n, j]
                        gexp = gh * hs[i, n, j] * a  # gradient of the exponent dt * A
                        gdtt[j] += gexp * ab[n, j]
                        gchunk[n, j] += gexp * dtt[j]
                        gdu[j] += gh * bn
                        sb += gh * du[j]
                        carry[n, j] = a * gh
                    gB[b, grp, t, n] += sb
                gut = gu[b, t, d0 : d0 + nd]
                gdr = gdelta[b, t, d0 : d0 + nd]
                row = delta[b, t, d0 : d0 + nd]
                for j in range(nd):
                    gut[j] = gdu[j] * dtt[j] + gys[i, j] * dv[j]
                    gdt = gdtt[j] + gdu[j] * ut[j]
                    if softplus:  # d softplus(x) / dx = sigmoid(x)
                        gdt = gdt * fast_sigmoid(row[j] + bb[j])
                    gdr[j] = gdt
                    gbtotal[j] += gdt
            gtotal[:, :nd] += gchunk[:, :nd]
        gA[b, :, d0 : d0 + nd] = gtotal[:, :nd]
        gD[b, d0 : d0 + nd] = gdtotal[:nd]
        gbias[b, d0 : d0 + nd] = gbtotal[:nd]


@njit(cache=True, nogil=True, error_model="numpy")
def scan_backward(
    u, delta, bias, At, Bm, Cm, Dv, z, ckpt, gout, softplus, chunk, dblk, ngroups,
    gu, gdelta, gz, gA, gB, gC, gD, gbias, start, stop,
):  # pragma: no cover - compiled
    """Gradients of ``sum(gout * out)`` for work items ``start .. stop`` of ``Bsz * ngroups``.

    Fills ``gu, gdelta, gz [Bsz, L, D]`` (``gdelta`` is with respect to ``delta``, before the bias and
    the softplus), per-row partials ``gA [Bsz, N, D]``, ``gD, gbias [Bsz, D]`` and per-channel-group
    partials ``gB, gC [Bsz, ngroups, L, N]`` (zero-initialised); the caller sums the partials.
    """
    for item in range(start, stop):
        _backward_group(u, delta, bias, At, Bm, Cm, Dv, z, ckpt, gout, softplus, chunk, dblk, ngroups,
                        gu, gdelta, gz, gA, gB, gC, gD, gbias, item // ngroups, item % ngroups)
