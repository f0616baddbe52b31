"""Inference checkpoints: ``config.yaml`` + ``model.safetensors`` (or ``model.pt``) at a local or s3:// URI."""

from __future__ import annotations

import dataclasses
import io
import logging
import posixpath
import tempfile
from pathlib import Path
from typing import Literal

import torch
import yaml
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from transformers import PreTrainedTokenizerBase

from reid.config import Config, dump_config
from reid.config.loader import config_from_dict
from reid.models.encoders import architecture_dict
from reid.models.factory import create_model
from reid.models.reid_model import ReidModel
from reid.models.retrieval import build_tokenizer
from reid.storage import Location, exists, list_files, read_bytes, resolve, write_bytes, write_json
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
INFO_FILE = "checkpoint.json"
WEIGHT_FILES = {"safetensors": "model.safetensors", "pt": "model.pt"}
TOKENIZER_DIR = "tokenizer"


def save_inference_checkpoint(
    model: ReidModel,
    config: Config,
    uri: str,
    storage: StorageConfig | None = None,
    fmt: Literal["safetensors", "pt"] = "safetensors",
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> None:
    """Write ``model`` (its full ``state_dict``, on the CPU) and ``config`` under ``uri``.

    The saved config embeds both encoders' architectures (``model.vision_config``/``text_config`` with
    no ``*_name_or_path``), so loading needs neither the hub nor the original pretrained files.
    ``tokenizer``, when given, is saved under ``tokenizer/`` for :func:`load_checkpoint_tokenizer`.
    Pass the bare module (``engine.module`` under DeepSpeed), with ZeRO-3 parameters gathered.
    """
    if fmt not in WEIGHT_FILES:
        raise ValueError(f"checkpoint format must be one of {sorted(WEIGHT_FILES)}, got {fmt!r}")
    if tuple(config.data.image_size) != model.image_size:
        raise ValueError(f"config data.image_size {config.data.image_size} != the model's {model.image_size}")
    loc = resolve(uri, storage)
    write_bytes(loc.join(CONFIG_FILE), dump_config(inference_config(model, config)).encode("utf-8"))
    state = _detached_state(model)
    if fmt == "safetensors":
        data = save_safetensors(state)
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    write_bytes(loc.join(WEIGHT_FILES[fmt]), data)
    info = {
        "weights": WEIGHT_FILES[fmt],
        "tensors": len(state),
        "vision_name_or_path": config.model.vision_name_or_path,
        "text_name_or_path": config.model.text_name_or_path,
        "tokenizer": TOKENIZER_DIR if tokenizer is not None else None,
    }
    write_json(loc.join(INFO_FILE), info)
    if tokenizer is not None:
        _save_tokenizer(tokenizer, loc)
    logger.info("saved inference checkpoint (%d tensors) to %s", len(state), loc.uri)


def load_inference_checkpoint(uri: str, storage: StorageConfig | None = None) -> tuple[ReidModel, Config]:
    """The model (on the CPU, eval mode) and config written by :func:`save_inference_checkpoint`."""
    loc = resolve(uri, storage)
    config = read_checkpoint_config(uri, storage)
    model = create_model(config)
    safetensors_loc, pt_loc = loc.join(WEIGHT_FILES["safetensors"]), loc.join(WEIGHT_FILES["pt"])
    if exists(safetensors_loc):
        state = load_safetensors(read_bytes(safetensors_loc))
    elif exists(pt_loc):
        state = torch.load(io.BytesIO(read_bytes(pt_loc)), map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"no {' or '.join(WEIGHT_FILES.values())} under checkpoint {loc.uri}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {loc.uri} does not match its config.yaml: {exc}") from exc
    return model.eval(), config


def read_checkpoint_config(uri: str, storage: StorageConfig | None = None) -> Config:
    """The :class:`Config` saved with a checkpoint (type-checked like any config file)."""
    loc = resolve(uri, storage).join(CONFIG_FILE)
    if not exists(loc):
        raise FileNotFoundError(f"no {CONFIG_FILE} in checkpoint {posixpath.dirname(loc.uri)}")
    data = yaml.safe_load(read_bytes(loc).decode("utf-8")) or {}
    return config_from_dict(data, loc.uri)


def load_checkpoint_tokenizer(uri: str, storage: StorageConfig | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the checkpoint, else the one named by its ``data.tokenizer``."""
    loc = resolve(uri, storage).join(TOKENIZER_DIR)
    files = list_files(loc)
    if not files:
        return build_tokenizer(read_checkpoint_config(uri, storage).data.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            name = posixpath.relpath(path, loc.path)
            target = Path(tmp, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read_bytes(dataclasses.replace(loc, path=path)))
        return build_tokenizer(tmp)


def inference_config(model: ReidModel, config: Config) -> Config:
    """``config`` with the encoders' names replaced by their full architectures (self-contained)."""
    model_cfg = dataclasses.replace(
        config.model,
        vision_name_or_path=None,
        vision_config=model.image_encoder.architecture(),
        text_name_or_path=None,
        text_config=architecture_dict(model.text_encoder),
    )
    return dataclasses.replace(config, model=model_cfg)


def _detached_state(model: ReidModel) -> dict[str, torch.Tensor]:
    """CPU contiguous copies of the state dict; tensors sharing storage are cloned (safetensors refuses them)."""
    state: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        if t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        state[name] = t
    return state


def _save_tokenizer(tokenizer: PreTrainedTokenizerBase, loc: Location) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for file in sorted(Path(tmp).rglob("*")):
            if file.is_file():
                write_bytes(loc.join(TOKENIZER_DIR, file.relative_to(tmp).as_posix()), file.read_bytes())

