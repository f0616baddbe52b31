"""``reid.describe`` stays free of Ray and MLflow (they live in ``reid.distributed``)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import reid.describe


def test_describe_modules_import_neither_ray_nor_mlflow() -> None:
    modules = sorted(f"reid.describe.{m.name}" for m in pkgutil.iter_modules(reid.describe.__path__))
    assert "reid.describe.mllm" in modules and "reid.describe.styles" in modules
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('ray', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
