"""The root configuration: one frozen dataclass per section, each defined beside the code it configures."""

from __future__ import annotations

from dataclasses import dataclass, field

from reid.data.config import DataConfig
from reid.describe.config import DescribeConfig, StylesConfig
from reid.evaluation.config import EvalConfig
from reid.losses.config import GradNormConfig, LossConfig
from reid.models.backbone_spec import check_image_backbone
from reid.models.config import ModelConfig
from reid.storage.config import StorageConfig
from reid.training.config import OptimConfig, TrackingConfig, TrainConfig
from reid.training.tune_config import TuneConfig


@dataclass(frozen=True)
class Config:
    """Everything a job needs. Load with :func:`reid.config.load_config`; never build by hand in jobs."""

    seed: int = 0
    storage: StorageConfig = field(default_factory=StorageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    gradnorm: GradNormConfig = field(default_factory=GradNormConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    styles: StylesConfig = field(default_factory=StylesConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def __post_init__(self) -> None:
        if self.train.engine == "deepspeed" and self.train.zero_stage == 3 and self.gradnorm.enabled:
            # GradNorm differentiates each task loss w.r.t. whole shared parameters; ZeRO-3 partitions them
            raise ValueError("train.zero_stage 3 partitions the parameters GradNorm differentiates; use ZeRO 0-2 "
                             "with gradnorm.enabled, or set gradnorm.enabled=false (fixed task weights)")
        check_image_backbone(self.model.vision_name_or_path, self.model.vision_config, self.model.vision_stem,
                             tuple(self.data.image_size))
        if self.uses_parts and self.loss.local_align <= 0:
            raise ValueError(f"model.local_align.kind={self.model.local_align.kind!r} needs loss.local_align > 0 "
                             "(its weight); set model.local_align.kind=none to train without local alignment")

    @property
    def uses_parts(self) -> bool:
        """Whether training reads part regions and phrases (SAP-SAM local alignment is on)."""
        return self.model.local_align.kind != "none"

    @property
    def uses_image_decoding(self) -> bool:
        """Whether the model has SAP-SAM's image decoder, so that training adds the decoding term."""
        return self.model.image_decoding.strategy != "none"
