"""Data pipeline settings: dataset URI, image size, augmentation, tokenizer and P x K batches."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; each transform can be switched off."""

    flip: bool = True
    flip_prob: float = 0.5
    pad_crop: bool = True
    pad: int = 10
    random_erasing: bool = True
    erasing_prob: float = 0.5


@dataclass(frozen=True)
class BatchConfig:
    """Identity-balanced batches: ``p`` identities x ``k`` images each."""

    p: int = 8
    k: int = 4

    def __post_init__(self) -> None:
        if self.p < 2 or self.k < 1:
            raise ValueError("batch.p must be >= 2 and batch.k >= 1")


@dataclass(frozen=True)
class DataConfig:
    """Where the prepared dataset lives and how batches are made from it.

    ``loader_cpus`` is the CPUs each Ray Data loader task reserves; ``loader_batches_per_task`` the P x K
    batches (of this rank) a loader task builds at least: consecutive shard visits are grouped into one task
    until they hold that many, since Ray Data leaves a gap between a worker's tasks (0.2-0.4 s on 2 cores).
    ``part_phrase_length`` is the token length of a part phrase (local alignment; SAP-SAM uses 16).
    """

    uri: str = "runs/demo/dataset"
    image_size: tuple[int, int] = (384, 128)
    tokenizer: str = "bert-base-uncased"
    max_text_length: int = 77
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    eval_batch_size: int = 64
    loader_cpus: float = 0.5
    loader_batches_per_task: int = 16
    val_split: str = "val"
    test_split: str = "test"
    use_descriptions: bool = True
    part_phrase_length: int = 16

    def __post_init__(self) -> None:
        if self.part_phrase_length < 2:
            raise ValueError(f"data.part_phrase_length must be >= 2, got {self.part_phrase_length}")
        if self.loader_cpus <= 0 or self.loader_batches_per_task < 1 or self.eval_batch_size < 1:
            raise ValueError("data.loader_cpus must be > 0, data.loader_batches_per_task and data.eval_batch_size >= 1")
