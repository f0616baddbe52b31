"""Loss functions as pure functions, the objective and GradNorm (no Ray, no MLflow)."""

from reid.losses.adversarial import clothing_adversarial
from reid.losses.config import GradNormConfig, LossConfig
from reid.losses.contrastive import clothing_match, infonce
from reid.losses.decoupling import hsic
from reid.losses.gate import gate_regularization
from reid.losses.gradnorm import FixedWeights, GradNorm, build_balancer
from reid.losses.objective import compute_losses, create_balancer, enabled_terms, weighted_total
from reid.losses.triplet import triplet_batch_hard

__all__ = [
    "FixedWeights",
    "GradNorm",
    "GradNormConfig",
    "LossConfig",
    "build_balancer",
    "clothing_adversarial",
    "clothing_match",
    "compute_losses",
    "create_balancer",
    "enabled_terms",
    "gate_regularization",
    "hsic",
    "infonce",
    "triplet_batch_hard",
    "weighted_total",
]
