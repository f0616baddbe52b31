"""Search spaces: every shipped space resolves against the config schema; broken ones fail naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reid.config import Config, load_config
from reid.config.loader import with_overrides
from reid.search_space import SpaceError, load_space, parse_space, validate_space

SPACES = sorted((Path(__file__).parents[1] / "tune_spaces").glob("*.yaml"))
PAPER_CONFIG = Path(__file__).parents[1] / "jobs" / "configs" / "cuhk-pedes.yaml"
TABLES = {"table1_bdam": 5, "table2_fusion": 5, "table3_losses": 6, "table4_clustering": 7, "sapsam_table4": 3,
          "sapsam_table6": 5}


@pytest.fixture(scope="module")
def base() -> Config:
    return load_config("pkg://tiny")


def test_the_documented_spaces_are_shipped() -> None:
    names = {p.stem for p in SPACES}
    assert {"clustering", "losses", "loss_weights", "gradnorm", "optimisation", *TABLES} <= names


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_shipped_space_resolves_against_the_schema(path: Path, base: Config) -> None:
    space = load_space(path)
    validate_space(space, base)
    validate_space(space, load_config(str(PAPER_CONFIG)))  # the paper's CUHK-PEDES settings too
    assert space.description
    for name in space.variants:  # each paper-table row builds a valid config that differs from the base
        overrides = space.trial_overrides({"variant": name})
        config = with_overrides(base, overrides)
        for key, value in overrides.items():
            node = config
            for part in key.split("."):
                node = getattr(node, part)
            assert node == value, (name, key)


@pytest.mark.parametrize("name,rows", sorted(TABLES.items()))
def test_paper_tables_have_one_variant_per_row(name: str, rows: int) -> None:
    space = load_space(Path(__file__).parents[1] / "tune_spaces" / f"{name}.yaml")
    assert len(space.variants) == rows and not space.params


BROKEN = [
    ({"params": {"optim.learning_rate": {"loguniform": [1e-5, 1e-3]}}}, "optim.learning_rate"),
    ({"params": {"model.bdam": {"choice": [1, 2]}}}, "model.bdam"),
    ({"params": {"loss.infonce": {"uniform": [0.0, 1.0]}}}, "loss.infonce"),
    ({"params": {"model.bdam.blocks": {"uniform": [2.0, 6.0]}}}, "model.bdam.blocks"),
    ({"params": {"styles.algorithm": {"randint": [0, 3]}}}, "styles.algorithm"),
    ({"params": {"loss.triplet": {"choice": [True, "no"]}}}, "loss.triplet"),
    ({"params": {"data.batch.p": {"grid": [8, 16.5]}}}, "data.batch.p"),
    ({"params": {"styles.algorithm": {"choice": ["dbscan", "spectral"]}}}, "styles.algorithm"),
    ({"params": {"loss.temperature": {"choice": [0.07, 0.0]}}}, "loss.temperature"),
    ({"params": {"loss.temperature": {"uniform": [0.0, 0.1]}}}, "loss.temperature"),
    ({"params": {"optim.lr": {"loguniform": [0.0, 1e-3]}}}, "optim.lr"),
    ({"params": {"optim.lr": {"uniform": [1e-3, 1e-4]}}}, "optim.lr"),
    ({"params": {"optim.lr": {"normal": [0.0, 1.0]}}}, "optim.lr"),
    ({"params": {"optim.lr": {"choice": []}}}, "optim.lr"),
    ({"params": {"gradnorm.clip_max": {"choice": [0.5]}}}, "gradnorm.clip_max"),
    ({"variants": {"ok": {}, "bad": {"model.bdam.gates": False}}}, "model.bdam.gates"),
    ({"variants": {"bad": {"model.fusion.kind": "lstm"}}}, "model.fusion.kind"),
    ({"fixed": {"train.epoch": 3}, "params": {"optim.lr": {"choice": [1e-4]}}}, "train.epoch"),
    ({"variants": {"a": {"optim.lr": 1e-3}}, "params": {"optim.lr": {"choice": [1e-4]}}}, "optim.lr"),
]


@pytest.mark.parametrize("data,key", BROKEN, ids=[f"{k}-{i}" for i, (_, k) in enumerate(BROKEN)])
def test_a_broken_space_fails_naming_the_key(data: dict, key: str, base: Config) -> None:
    with pytest.raises(SpaceError) as info:
        validate_space(parse_space(data, "broken.yaml"), base)
    assert f"'{key}" in str(info.value) and "broken.yaml" in str(info.value)


@pytest.mark.parametrize("text,fragment", [
    ("- a\n- b\n", "must be a mapping"),
    ("params: {}\n", "searches nothing"),
    ("params: {optim.lr: {choice: [1]}}\nmetric: val/R1\n", "unknown top-level key 'metric'"),
    ("params: {variant: {choice: [a]}}\n", "'variant' is reserved"),
])
def test_malformed_space_files_fail_before_the_schema_check(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=fragment):
        load_space(path)


def test_valid_kinds_and_types_are_accepted(base: Config) -> None:
    space = parse_space(yaml.safe_load("""
        fixed: {train.epochs: 3}
        params:
          optim.lr: {loguniform: [1.0e-5, 1.0e-3]}
          optim.weight_decay: {randint: [0, 2]}          # an int draw is a valid float
          model.bdam.blocks: {randint: [1, 5]}
          loss.hsic_sigma: {choice: [null, 0.5]}         # an optional float
          data.image_size: {grid: [[64, 32], [96, 48]]}  # a tuple field from lists
          gradnorm.fixed_weights: {choice: [{infonce: 1.0, triplet: 0.5}]}
        variants: {plain: {}, no_gate: {model.bdam.gate: false}}
    """), "ok.yaml")
    validate_space(space, base)
    assert space.has_grid() and space.searched_keys()[0] == "variant"
    overrides = space.trial_overrides({"variant": "no_gate", "optim.lr": 2e-4, "model.bdam.blocks": 2})
    assert overrides == {"train.epochs": 3, "model.bdam.gate": False, "optim.lr": 2e-4, "model.bdam.blocks": 2}
    assert space.params["model.bdam.blocks"].representatives() == (1, 4)  # randint's high is exclusive
    with pytest.raises(SpaceError, match="unknown variant 'missing'"):
        space.trial_overrides({"variant": "missing"})


def test_fingerprint_follows_content_not_layout() -> None:
    a = parse_space({"params": {"optim.lr": {"choice": [1e-4, 1e-3]}}, "description": "x"}, "a.yaml")
    b = parse_space({"description": "y", "params": {"optim.lr": {"choice": [1e-4, 1e-3]}}}, "b.yaml")
    c = parse_space({"params": {"optim.lr": {"choice": [1e-4, 2e-3]}}}, "c.yaml")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_spaces_and_the_tune_command_load_without_ray_or_mlflow() -> None:
    """Parsing and checking a space (and building ``reid tune``'s parser) stays on the Ray-free side."""
    code = "\n".join([
        "import sys",
        "from reid.config import load_config",
        "from reid.search_space import load_space, validate_space",
        "from reid.cli.main import build_parser",
        f"validate_space(load_space({str(SPACES[0])!r}), load_config('pkg://tiny'))",
        "args = build_parser().parse_args(['tune', '--space', 'x.yaml', '--num-samples', '3', '--resume'])",
        "assert (args.space, args.num_samples, args.resume, args.data_source) == ('x.yaml', 3, True, None)",
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow'))",
        "assert not bad, bad[:5]",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_shipped_spaces_load_by_package_name_from_anywhere(tmp_path: Path) -> None:
    """``--space pkg://NAME`` works outside the repository; an unknown name lists the shipped ones."""
    from reid.search_space import packaged_spaces

    assert packaged_spaces() == sorted(p.stem for p in SPACES)
    code = ("from reid.search_space import load_space; s = load_space('pkg://optimisation'); "
            "print(s.name, sorted(s.params))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "optimisation ['data.batch.k', 'data.batch.p', 'optim.lr', 'optim.weight_decay']"
    with pytest.raises(SpaceError, match="no packaged search space 'pkg://nosuch'; packaged: "
                                         "pkg://clothing_terms, pkg://clustering"):
        load_space("pkg://nosuch")
