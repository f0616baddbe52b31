"""Vectorisable ``exp``, ``sigmoid`` and ``softplus`` for numba kernels (float32 polynomials, exact float64).

LLVM cannot vectorise a loop that calls libm; these float32 versions are branch-free arithmetic (Cephes'
``expf`` polynomial, about 1 ulp), so the kernels' inner loops over channels become SIMD code. Float64
inputs (used by the precision tests) get the exact ``math`` functions.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_F = np.float32
_LOG2E = _F(1.44269504088896341)
_LN2_HI = _F(0.693359375)
_LN2_LO = _F(-2.12194440e-4)
_X_MIN = _F(-87.3)  # exp(-87.3) ~ 1.2e-38, still a normal float32
_X_MAX = _F(88.0)
_HALF = _F(0.5)
_ONE = _F(1.0)
_EXP_POLY = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3), _F(4.1665795894e-2),
             _F(1.6666665459e-1), _F(5.0000001201e-1))
_ZERO = _F(0.0)
_TWO = _F(2.0)
_ATANH_POLY = tuple(_F(1.0 / k) for k in (3, 5, 7, 9, 11, 13))


@intrinsic
def _pow2_int(typingctx, k):
    """``2**k`` for an integral float32 ``k`` in [-126, 127], built from the exponent bits (no libm call)."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.fptosi(args[0], i32)
        bits = builder.add(bits, ir.Constant(i32, 127))
        bits = builder.shl(bits, ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.float32), codegen


def fast_exp(x: float) -> float:
    """``exp(x)``."""
    return math.exp(x)


def fast_sigmoid(x: float) -> float:
    """``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + math.exp(-x))


def fast_softplus(x: float) -> float:
    """``log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))`` (no overflow)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@overload(fast_exp, inline="always")
def _fast_exp_overload(x):
    if x == types.float32:
        p0, p1, p2, p3, p4, p5 = _EXP_POLY

        def exp_f32(x):
            # exp(x) = 2**k * exp(r), k = round(x / ln2), r = x - k ln2 in [-ln2/2, ln2/2].
            x = min(max(x, _X_MIN), _X_MAX)
            k = np.floor(x * _LOG2E + _HALF)
            r = x - k * _LN2_HI - k * _LN2_LO
            p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
            return (p * r * r + r + _ONE) * _pow2_int(k)

        return exp_f32
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


@overload(fast_sigmoid, inline="always")
def _fast_sigmoid_overload(x):
    if x == types.float32:
        return lambda x: _ONE / (_ONE + fast_exp(-x))
    if isinstance(x, types.Float):
        return lambda x: 1.0 / (1.0 + math.exp(-x))
    return None


@overload(fast_softplus, inline="always")
def _fast_softplus_overload(x):
    if x == types.float32:
        q1, q2, q3, q4, q5, q6 = _ATANH_POLY

        def softplus_f32(x):
            # log1p(e) = 2 atanh(s), s = e / (2 + e) in (0, 1/3] for e = exp(-|x|) in (0, 1]; the odd series
            # 2 s (1 + s^2/3 + ... + s^12/13) is within ~1e-7 relative there.
            e = fast_exp(-abs(x))
            s = e / (_TWO + e)
            s2 = s * s
            series = _ONE + s2 * (q1 + s2 * (q2 + s2 * (q3 + s2 * (q4 + s2 * (q5 + s2 * q6)))))
            return max(x, _ZERO) + _TWO * s * series

        return softplus_f32
    if isinstance(x, types.Float):
        return lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    return None
