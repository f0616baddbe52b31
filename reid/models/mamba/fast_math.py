"""Vectorisable ``exp``, ``sigmoid`` and ``1 - exp(-x)`` for numba kernels (float32 polynomials, exact float64).

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
_SMALL = _F(0.125)
_INV_FACT = tuple(_F(1.0 / math.factorial(k)) for k in range(2, 7))  # 1/2!, ..., 1/6!


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


def one_minus_exp_neg(x: float) -> float:
    """``1 - exp(-x) = -expm1(-x)`` for ``x >= 0``, accurate for small ``x`` (it is ``sigmoid(softplus^-1(x))``)."""
    return -math.expm1(-x)


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


@overload(one_minus_exp_neg, inline="always")
def _one_minus_exp_neg_overload(x):
    if x == types.float32:
        c2, c3, c4, c5, c6 = _INV_FACT

        def impl_f32(x):
            # Below 1/8 the Taylor series to x**6 (truncation < x**7 / 7! ~ 1e-9 relative); above, 1 - exp(-x).
            series = x * (_ONE - x * (c2 - x * (c3 - x * (c4 - x * (c5 - x * c6)))))
            return series if x < _SMALL else _ONE - fast_exp(-x)

        return impl_f32
    if isinstance(x, types.Float):
        return lambda x: -math.expm1(-x)
    return None
