"""Upstream stages of a search trial: a trial that changes ``styles.*`` or ``describe.*`` re-runs those stages
on its own copy of the dataset before training (paper Table 4 compares clustering methods this way)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pyarrow.fs as pafs

from reid.config import Config
from reid.config.loader import with_overrides
from reid.storage import exists, resolve, write_json

logger = logging.getLogger(__name__)

STAGE_PREFIXES = {"styles": "styles.", "describe": "describe."}
READY_FILE = "trial_dataset.json"
BASE_ENTRIES = ("manifest.json", "id_map.json", "identities")


def upstream_stages(keys: Iterable[str]) -> tuple[str, ...]:
    """The stages a trial must re-run before training when it overrides ``keys``: new styles need new
    descriptions (their exemplars go into the describer prompt), new describer settings need descriptions."""
    keys = list(keys)
    styles = any(k.startswith(STAGE_PREFIXES["styles"]) for k in keys)
    describe = styles or any(k.startswith(STAGE_PREFIXES["describe"]) for k in keys)
    return ("styles",) * styles + ("describe",) * describe


def prepare_trial_dataset(config: Config, keys: Iterable[str], target_uri: str) -> Config:
    """``config`` with ``data.uri`` at ``target_uri``, a copy of the dataset whose styles and descriptions
    were re-made with this trial's settings; ``config`` itself when the trial changes neither.

    The copy holds the identity shards, manifest and id map (and the existing styles when only the
    describer changes). A marker file written last makes a restarted trial reuse a finished copy; an
    unfinished one is redone (the describe stage itself skips images already described).
    """
    stages = upstream_stages(keys)
    if not stages:
        return config
    target = resolve(target_uri, config.storage)
    if not exists(target.join(READY_FILE)):
        entries = BASE_ENTRIES + (() if "styles" in stages else ("styles",))
        _copy_entries(config.data.uri, target_uri, entries, config)
        if "styles" in stages:
            from reid.describe.styles import run_styles_local

            logger.info("trial styles (%s) on %s", config.styles.algorithm, target.uri)
            run_styles_local(target.uri, config.styles, config.storage)
        from reid.describe.runner import describe_dataset_local

        logger.info("trial descriptions (%s) on %s", config.describe.backend, target.uri)
        describe_dataset_local(target.uri, config.describe, config.storage)
        write_json(target.join(READY_FILE), {"source": config.data.uri, "stages": list(stages)})
    return with_overrides(config, {"data.uri": target.uri})


def _copy_entries(source_uri: str, target_uri: str, entries: Iterable[str], config: Config) -> None:
    source, target = resolve(source_uri, config.storage), resolve(target_uri, config.storage)
    for name in entries:
        src = source.join(name)
        info = src.filesystem.get_file_info(src.path)
        if info.type == pafs.FileType.NotFound:
            if name == "identities":
                raise FileNotFoundError(f"no identity shards under {source.uri} (run `reid prepare` first)")
            continue
        dst = target.join(name)
        if info.type == pafs.FileType.Directory:
            dst.filesystem.create_dir(dst.path, recursive=True)
        else:
            dst.filesystem.create_dir(target.path, recursive=True)
        pafs.copy_files(src.path, dst.path, source_filesystem=src.filesystem, destination_filesystem=dst.filesystem)
