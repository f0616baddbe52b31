"""Ray Tune over the training job: a search space, ASHA on a validation metric, one MLflow parent run with a
child run per trial, per-trial Train checkpoints on storage, and resume of an interrupted search."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from reid.config import Config, ConfigError
from reid.config.loader import with_overrides
from reid.distributed.group_starts import restarts
from reid.distributed.portable_config import portable_config
from reid.distributed.runtime import ensure_ray
from reid.distributed.tracking import RunTracker, check_cluster_tracking_store, safe_config_yaml, tracking_uri
from reid.distributed.train_job import RESULT_FILE
from reid.distributed.tune_stages import upstream_stages
from reid.distributed.tune_summary import (
    COMPLETED,
    ERROR,
    STOPPED,
    TrialRow,
    error_line,
    format_value,
    sort_rows,
    to_markdown,
    write_summary,
)
from reid.distributed.tune_trial import EPOCHS_DONE, ChildRunCallback, TrialSetup, close_child_run, train_trial
from reid.search_space import VARIANT, Distribution, SearchSpace, SpaceError, validate_space
from reid.storage import Location, exists, read_json, resolve, write_bytes, write_json
from reid.training.batches import shard_identities, steps_per_pass
from reid.training.validation import IMAGE_PREFIX

logger = logging.getLogger(__name__)

SEARCH_FILE = "search.json"


class SearchExistsError(RuntimeError):
    """A fresh search was asked for where one exists (use ``--resume``), or a resume found nothing to resume."""


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search: its rows best first, the best trial's config, the parent run, wall time."""

    search_uri: str
    metric: str
    keys: list[str]
    rows: list[TrialRow]
    best_config: Config | None
    best_overrides: dict[str, Any] | None
    parent_run_id: str | None
    wall_s: float

    def table(self) -> str:
        return to_markdown(self.rows, self.keys, self.metric)

    @property
    def retried_trials(self) -> int:
        """Trials whose training went on from a checkpoint after a failure at least once."""
        return sum(row.retries > 0 for row in self.rows)


def search_uri(config: Config) -> str:
    """Where a search lives: ``<tune.storage_uri>/<tune.name>``."""
    return f"{config.tune.storage_uri.rstrip('/')}/{config.tune.name}"


def search_metric(config: Config) -> str:
    """``tune.metric``, else the validation metric that picks checkpoints: ``val/<eval.select_metric>``. An
    ``image_*`` metric where training reads no descriptions is its plain metric (the gallery is images alone
    then, and validation reports no ``image_*``), as checkpoint selection takes it."""
    if config.tune.metric:
        return config.tune.metric
    metric = config.eval.select_metric
    if metric.startswith(IMAGE_PREFIX) and not (config.data.use_descriptions and config.eval.image_only):
        metric = metric.removeprefix(IMAGE_PREFIX)
    return f"val/{metric}"


def validate_search(config: Config, space: SearchSpace) -> None:
    """Everything that can be checked before a trial starts: the space against the schema, the search
    algorithm against the space, and that every searched key can change what training sees."""
    validate_space(space, config)
    if config.tune.search_alg == "optuna":
        if space.has_grid():
            raise SpaceError(f"{space.source}: tune.search_alg=optuna cannot search 'grid' or 'variants'")
        try:
            import optuna  # noqa: F401
        except ImportError as exc:
            raise ConfigError("tune.search_alg=optuna needs the optional 'optuna' package "
                              "(pip install optuna), or use tune.search_alg=random") from exc
    keys = [*space.params, *space.fixed, *(k for v in space.variants.values() for k in v)]
    stage_keys = [k for k in keys if upstream_stages([k])]
    if stage_keys and not config.data.use_descriptions:
        raise SpaceError(f"{space.source}: '{stage_keys[0]}' only changes the descriptions, which training "
                         "ignores with data.use_descriptions=false")
    check_against_dataset(config, space)


def check_against_dataset(config: Config, space: SearchSpace) -> None:
    """Every setting a trial may draw must give full P x K batches on the training split (a P above its
    identities, or above what the workers share, would only fail inside the trial), and a trial with local
    alignment needs a dataset with part masks."""
    from reid.training.setup import check_part_regions

    shards = shard_identities(config.data.uri, "train", config.storage)
    for where, overrides in space.candidates():
        trial = with_overrides(config, overrides)
        try:
            steps_per_pass(shards, trial.data.batch.p, trial.train.workers)
            check_part_regions(trial)
        except ValueError as exc:
            raise SpaceError(f"{space.source}: {where}: {exc} ({sum(shards)} training identities in "
                             f"{config.data.uri})") from exc


def run_search(config: Config, space: SearchSpace, num_samples: int | None = None, resume: bool = False,
               data: str | None = None) -> SearchOutcome:
    """Search ``space`` around ``config`` with Ray Tune; every trial runs ``reid train``'s trainer builder.

    A fresh search refuses an existing ``<tune.storage_uri>/<tune.name>``; ``resume`` restores it
    (``Tuner.restore``): finished trials are kept, unfinished ones continue from their last Train checkpoint.
    """
    started = time.perf_counter()
    validate_search(config, space)
    config = portable_config(config)
    if num_samples is not None:
        config = with_overrides(config, {"tune.num_samples": num_samples})
    root = resolve(search_uri(config), config.storage)
    state = saved_state(root, space, resume)
    ensure_ray(dashboard=True)
    _require_state_api()
    state = state or _new_state(config, space, root)
    metric = search_metric(config)
    setup = TrialSetup(config, space, root.join("trials").uri, root.join("datasets").uri,
                       state.get("parent_run_id"), data or config.train.data_source, metric)
    grid = _tuner(config, space, setup, root, resume).fit()
    rows = sort_rows([_row(result, setup, config) for result in grid], config.tune.mode)
    overrides = _best_overrides(space, rows)
    best = with_overrides(config, overrides) if overrides is not None else None
    outcome = SearchOutcome(root.uri, metric, space.searched_keys(), rows, best, overrides, setup.parent_run_id,
                            time.perf_counter() - started)
    _publish_summary(outcome, space, root, state.get("tracking_uri"))
    logger.debug("search %s: %d trials in %.1f s\n%s", root.uri, len(rows), outcome.wall_s, outcome.table())
    return outcome


def _require_state_api() -> None:
    """Fail now, not with a hung trial: Ray Train frees a stopped trial's workers through the state API."""
    from ray.util.state import list_nodes

    try:
        list_nodes(limit=1, timeout=30)
    except Exception as exc:  # the state API raises several unrelated types when the dashboard is missing
        raise RuntimeError("Ray Tune needs Ray's dashboard (state API): start the cluster with it "
                           f"(ray start --head --dashboard-host 127.0.0.1) and set RAY_ADDRESS ({exc})") from exc


def saved_state(root: Location, space: SearchSpace, resume: bool) -> dict[str, Any] | None:
    """The ``search.json`` of the search at ``root`` when resuming it (None for a fresh search).

    Refuses a fresh search where one exists, a resume where none exists, and a resume with another space.
    """
    saved = root.join(SEARCH_FILE)
    if exists(saved):
        if not resume:
            raise SearchExistsError(f"a search already exists at {root.uri}; pass --resume to continue it "
                                    "or choose another tune.name")
        state = read_json(saved)
        if state["space_fingerprint"] != space.fingerprint():
            raise SearchExistsError(f"the search at {root.uri} searched another space ({state['space']}); "
                                    f"resume it with that space or choose another tune.name")
        return state
    if resume:
        raise SearchExistsError(f"no search to resume at {root.uri}")
    return None


def _new_state(config: Config, space: SearchSpace, root: Location) -> dict[str, Any]:
    """Start the search's record: the parent MLflow run (space, metric and base config) and ``search.json``."""
    state: dict[str, Any] = {"space": space.source, "space_fingerprint": space.fingerprint(),
                             "metric": search_metric(config), "parent_run_id": None, "tracking_uri": None}
    if config.tracking.enabled:
        check_cluster_tracking_store(tracking_uri(config.tracking))
        parent = RunTracker.create(config, config.tune.name)
        parent.set_tags({"tune.role": "search", "tune.space": space.name, "tune.metric": search_metric(config),
                         "tune.space_fingerprint": space.fingerprint()})
        parent.client.log_text(parent.run_id, _space_text(space), "search/space.txt")
        state.update(parent_run_id=parent.run_id, tracking_uri=parent.uri)
    write_json(root.join(SEARCH_FILE), state)
    return state


def _space_text(space: SearchSpace) -> str:
    lines = [f"# {space.source}", space.description.strip(), ""]
    lines += [f"fixed {k} = {v!r}" for k, v in space.fixed.items()]
    lines += [f"variant {n}: {o}" for n, o in space.variants.items()]
    lines += [f"param {k}: {d.kind} {list(d.values) or [d.low, d.high]}" for k, d in space.params.items()]
    return "\n".join(lines) + "\n"


def param_space(space: SearchSpace) -> dict[str, Any]:
    """The Tune ``param_space``: the variants as a grid axis, then one Tune distribution per key."""
    out: dict[str, Any] = {}
    if space.variants:
        out[VARIANT] = tune.grid_search(list(space.variants))
    out.update({key: to_tune(dist) for key, dist in space.params.items()})
    return out


def to_tune(dist: Distribution) -> Any:
    """A :class:`Distribution` as a Tune sampler (``grid`` as ``grid_search``)."""
    if dist.kind == "grid":
        return tune.grid_search(list(dist.values))
    if dist.kind == "choice":
        return tune.choice(list(dist.values))
    if dist.kind == "uniform":
        return tune.uniform(dist.low, dist.high)
    if dist.kind == "loguniform":
        return tune.loguniform(dist.low, dist.high)
    return tune.randint(int(dist.low), int(dist.high))


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def _tuner(config: Config, space: SearchSpace, setup: TrialSetup, root: Location, resume: bool) -> tune.Tuner:
    trainable = tune.with_resources(tune.with_parameters(train_trial, setup=setup), {"cpu": config.tune.trial_cpus})
    fs = root.filesystem if root.is_remote else None
    if resume and tune.Tuner.can_restore(root.path, storage_filesystem=fs):
        logger.info("restoring the search at %s", root.uri)
        return tune.Tuner.restore(root.path, trainable, resume_unfinished=True, resume_errored=True,
                                  storage_filesystem=fs)
    t = config.tune
    scheduler = FIFOScheduler() if t.scheduler == "fifo" else ASHAScheduler(
        time_attr=EPOCHS_DONE, max_t=t.max_t or config.train.epochs, grace_period=t.grace_period,
        reduction_factor=t.reduction_factor)
    search_alg = None
    if t.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=config.seed)
    parent = resolve(t.storage_uri, config.storage)
    if not chatty():
        quiet_tune()
    return tune.Tuner(
        trainable,
        param_space=param_space(space),
        tune_config=tune.TuneConfig(metric=search_metric(config), mode=t.mode, scheduler=scheduler,
                                    search_alg=search_alg, num_samples=t.num_samples,
                                    max_concurrent_trials=t.max_concurrent_trials,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=t.name, storage_path=parent.path, storage_filesystem=fs,
                                  callbacks=[ChildRunCallback(setup.runs_uri, config.storage),
                                             TrialLines(setup.metric)],
                                  failure_config=tune.FailureConfig(max_failures=t.max_failures),
                                  verbose=1 if chatty() else 0),
    )


def chatty() -> bool:
    """Tune's own status tables only with ``--verbose`` (``REID_VERBOSE``); otherwise one line per trial."""
    return os.environ.get("REID_VERBOSE", "1") != "0"


def quiet_tune() -> None:
    """Without ``--verbose``: no Tune output engine (Ray 2.60's prints a failed trial's whole result table whatever
    the verbosity) and its controller's traceback of each failed trial to the log file only (:class:`TrialLines`
    writes it there and prints the trial's one line)."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the classic reporter at verbose=0 prints nothing
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)


class TrialLines(tune.Callback):
    """Driver side, without ``--verbose``: one line per ended trial (its values, status and best metric, or
    the line naming its error)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.best: dict[str, float] = {}

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        if self.metric in result:
            self.best[trial.trial_id] = max(self.best.get(trial.trial_id, float("-inf")), float(result[self.metric]))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._line(trial, f"finished, best {self.metric} {self.best.get(trial.trial_id, float('nan')):.2f}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._line(trial, f"error: {error_line(trial_error(trial)) or 'see the trial log'}")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        failures = int(getattr(trial, "num_failures", 0) or 0)
        why = error_line(trial_error(trial)) or "see the trial log"
        self._line(trial, f"failed ({why}); started again, its run resumes from its last checkpoint "
                          f"(failure {failures})")

    def _line(self, trial: Any, what: str) -> None:
        if chatty():
            return
        values = " ".join(f"{k}={format_value(v)}" for k, v in (trial.config or {}).items())
        print(f"trial {trial.trial_id} ({values}): {what}", flush=True)


def trial_error(trial: Any) -> str | None:
    """The text of a trial's latest error (Tune's error file, else its message), logged whole to the log file."""
    text = None
    try:  # the driver's local copy first (the copy in the search's storage is synced later), then that copy
        local = trial.error_file
        if local and os.path.exists(local):
            with open(local, encoding="utf-8", errors="replace") as file:
                text = file.read()
        else:
            error = trial.get_error()
            text = str(error) if error is not None else None
    except Exception:  # not readable (yet): the message Tune keeps, if any
        pass
    text = text or getattr(trial, "error_msg", None)
    if text:
        logger.info("trial %s failed:\n%s", trial.trial_id, text)
    return text


def _row(result: Any, setup: TrialSetup, config: Config) -> TrialRow:
    """One trial of the result grid: its searched values, best metric, epochs, status and child run."""
    trial_id = os.path.basename(str(result.path).rstrip("/"))
    sample = {k: v for k, v in (result.config or {}).items() if k in setup.space.searched_keys()}
    values, epochs = [], 0
    frame = result.metrics_dataframe
    if frame is not None and setup.metric in frame:
        values = [float(v) for v in frame[setup.metric].dropna()]
        epochs = int(frame["epoch"].max()) + 1 if "epoch" in frame else len(values)
    best = (max(values) if config.tune.mode == "max" else min(values)) if values else None
    finished = resolve(f"{setup.runs_uri}/{trial_id}", config.storage).join(RESULT_FILE)
    done = exists(finished) and bool(read_json(finished).get("finished"))
    # a trial that ended before its last epoch was stopped early, whatever its result file says
    ran_all = epochs >= config.train.epochs
    status = ERROR if result.error is not None else (COMPLETED if done and ran_all else STOPPED)
    run_id = close_child_run(setup.runs_uri, trial_id, config.storage, failed=status == ERROR)
    retries = restarts(f"{setup.runs_uri.rstrip('/')}/{trial_id}", config.storage)
    return TrialRow(trial_id, sample, best, epochs, status, run_id, error_line(result.error), retries)


def _best_overrides(space: SearchSpace, rows: list[TrialRow]) -> dict[str, Any] | None:
    """The dotted overrides of the best trial (``fixed``, its variant, its draws), or None without a best."""
    if not rows or rows[0].metric is None or math.isnan(rows[0].metric):
        return None
    return space.trial_overrides(rows[0].params)


def _publish_summary(outcome: SearchOutcome, space: SearchSpace, root: Location, tracking: str | None) -> None:
    """The summary files (table as CSV and Markdown, best config and overrides, plot) go to
    ``<search>/summary/`` on storage and, with tracking, onto the parent run."""
    log_keys = [k for k, d in space.params.items() if d.kind == "loguniform"]
    best_yaml = safe_config_yaml(outcome.best_config) if outcome.best_config is not None else None
    with tempfile.TemporaryDirectory(prefix="reid-tune-") as tmp:
        files = write_summary(tmp, outcome.rows, outcome.keys, outcome.metric, best_yaml, outcome.best_overrides,
                              log_keys)
        for file in files:
            write_bytes(root.join("summary", file.name), file.read_bytes())
        if outcome.parent_run_id and tracking:
            _report_parent(outcome, RunTracker(tracking, outcome.parent_run_id), tmp)


def _report_parent(outcome: SearchOutcome, parent: RunTracker, summary_dir: str) -> None:
    """The parent run gets the summary files, the best value and trial, and ends."""
    parent.log_artifacts(summary_dir, "summary")
    stopped = sum(r.status == STOPPED for r in outcome.rows)
    retried = outcome.retried_trials
    tags = {"tune.trials": str(len(outcome.rows)), "tune.stopped_early": str(stopped),
            "tune.retried_trials": str(retried), "tune.search_uri": outcome.search_uri}
    if outcome.best_config is not None:
        best = outcome.rows[0]
        parent.log_metrics({outcome.metric: float(best.metric or 0.0)}, "best/")
        tags.update({"tune.best_trial_id": best.trial_id, "tune.best_run_id": best.run_id or ""})
    parent.log_metrics({"wall_s": outcome.wall_s, "trials": float(len(outcome.rows)), "stopped_early": stopped,
                        "retried_trials": retried})
    parent.set_tags(tags)
    parent.finish("FINISHED" if all(r.status != ERROR for r in outcome.rows) else "FAILED")
