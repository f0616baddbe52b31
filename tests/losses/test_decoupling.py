"""HSIC (eq. 2): explicit trace formula, closed form, independence, monotonicity, RBF kernel; gate regulariser."""

from __future__ import annotations

import math

import pytest
import torch

from reid.losses import gate_regularization, hsic


def _matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def _hsic_reference(kx: list[list[float]], ky: list[list[float]]) -> float:
    n = len(kx)
    h = [[(1.0 if i == j else 0.0) - 1.0 / n for j in range(n)] for i in range(n)]
    prod = _matmul(_matmul(_matmul(kx, h), ky), h)
    return sum(prod[i][i] for i in range(n)) / (n - 1) ** 2


def _linear_kernel(x: torch.Tensor) -> list[list[float]]:
    rows = x.double().tolist()
    return [[sum(a * b for a, b in zip(r, s, strict=True)) for s in rows] for r in rows]


def _rbf_kernel(x: torch.Tensor, sigma: float) -> list[list[float]]:
    rows = x.double().tolist()
    return [[math.exp(-sum((a - b) ** 2 for a, b in zip(r, s, strict=True)) / (2 * sigma**2)) for s in rows]
            for r in rows]


@pytest.mark.parametrize("n,dx,dy", [(2, 3, 3), (7, 4, 6), (12, 5, 2)])
def test_linear_hsic_matches_trace_formula_and_closed_form(n: int, dx: int, dy: int) -> None:
    x, y = torch.randn(n, dx, dtype=torch.float64), torch.randn(n, dy, dtype=torch.float64)
    got = float(hsic(x, y))
    assert got == pytest.approx(_hsic_reference(_linear_kernel(x), _linear_kernel(y)), rel=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert got == pytest.approx(float((xc.t() @ yc).pow(2).sum()) / (n - 1) ** 2, rel=1e-10)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_rbf_hsic_matches_trace_formula(sigma: float) -> None:
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    expected = _hsic_reference(_rbf_kernel(x, sigma), _rbf_kernel(y, sigma))
    assert float(hsic(x, y, kernel="rbf", sigma=sigma)) == pytest.approx(expected, rel=1e-10)


def test_rbf_median_heuristic_uses_median_pairwise_distance() -> None:
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)

    def median_distance(z: torch.Tensor) -> float:
        d = sorted(math.dist(a, b) for i, a in enumerate(z.tolist()) for b in z.tolist()[i + 1:])
        return d[(len(d) - 1) // 2]

    expected = _hsic_reference(_rbf_kernel(x, median_distance(x)), _rbf_kernel(y, median_distance(y)))
    assert float(hsic(x, y, kernel="rbf")) == pytest.approx(expected, rel=1e-10)


def test_hsic_near_zero_for_independent_features() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4000, 8, generator=gen), torch.randn(4000, 8, generator=gen)
    dependent = float(hsic(x, x))
    assert float(hsic(x, y)) < 0.005 * dependent
    assert float(hsic(x, y, kernel="rbf")) < 0.02 * float(hsic(x, x, kernel="rbf"))


def test_hsic_grows_monotonically_with_shared_signal() -> None:
    gen = torch.Generator().manual_seed(1)
    shared, a, b = (torch.randn(2000, 16, generator=gen) for _ in range(3))
    for kernel in ("linear", "rbf"):
        values = []
        for k in (0, 2, 4, 8, 16):  # the first k of 16 dimensions are shared by x and y
            x, y = torch.cat([shared[:, :k], a[:, k:]], 1), torch.cat([shared[:, :k], b[:, k:]], 1)
            values.append(float(hsic(x, y, kernel=kernel)))
        assert values == sorted(values) and values[-1] > 20 * values[0], (kernel, values)


def test_rbf_hsic_sees_nonlinear_dependence_that_linear_misses() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3000, 1, generator=gen)
    y = x.pow(2)  # uncorrelated with x, but fully dependent
    noise = torch.randn(3000, 1, generator=gen).pow(2)
    assert float(hsic(x, y)) < 0.05 * float(hsic(y, y)) ** 0.5 * float(hsic(x, x)) ** 0.5
    assert float(hsic(x, y, kernel="rbf")) > 10 * float(hsic(x, noise, kernel="rbf"))


def test_hsic_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        hsic(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        hsic(torch.randn(1, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="kernel must be 'linear' or 'rbf'"):
        hsic(torch.randn(4, 2), torch.randn(4, 2), kernel="poly")  # type: ignore[arg-type]


def test_gate_regularization_is_mean_squared_distance_from_half() -> None:
    g = torch.rand(5, 7, dtype=torch.float64)
    expected = sum((v - 0.5) ** 2 for row in g.tolist() for v in row) / 35
    assert float(gate_regularization(g)) == pytest.approx(expected, rel=1e-12)
    assert float(gate_regularization(torch.full((3, 4), 0.5))) == 0.0
    with pytest.raises(ValueError, match="gate_regularization: 'gate' must be \\[N, D\\]"):
        gate_regularization(torch.rand(3))
