"""Gate regularisation: keep the BDAM gate from saturating (paper 4.2, table 3)."""

from __future__ import annotations

from torch import Tensor

from reid.losses.checks import as_float, check_matrix


def gate_regularization(gate: Tensor) -> Tensor:
    r"""Mean squared distance of the BDAM gate from 0.5: :math:`\frac{1}{BD}\sum_{b,d}(g_{bd} - 0.5)^2`.

    The gate :math:`g = \sigma(W[\hat f_{id}; \hat f_{clo}] + b)` splits each dimension between the identity
    (g) and clothing (1 - g) branches; the term keeps it away from hard 0/1 decisions.

    gate: [B, D] with values in [0, 1]. Returns a float32 scalar (float64 for float64 input).
    """
    check_matrix("gate_regularization", "gate", gate)
    return (as_float(gate) - 0.5).pow(2).mean()
