"""The descriptions table at ``<uri>/descriptions/part-*.parquet``: append-only writes and reads."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from reid.describe.schema import DESCRIPTION_SCHEMA, Description, descriptions_table
from reid.storage import Location, list_files, read_bytes, resolve, write_bytes
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)

DESCRIPTIONS_DIR = "descriptions"


def descriptions_location(uri: str, storage: StorageConfig | None = None) -> Location:
    """Where the part files of the dataset at ``uri`` live."""
    return resolve(uri, storage).join(DESCRIPTIONS_DIR)


def append_descriptions(uri: str, descriptions: Iterable[Description],
                        storage: StorageConfig | None = None) -> str | None:
    """Write ``descriptions`` as one new part file; return its URI (None when there is nothing to write).

    Part names start with a zero-padded nanosecond time so that name order is write order; a random
    suffix keeps concurrent writers apart. Existing parts are never touched.
    """
    table = descriptions_table(descriptions)
    if table.num_rows == 0:
        return None
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    loc = descriptions_location(uri, storage).join(name)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    write_bytes(loc, sink.getvalue())
    log.debug("wrote %d descriptions to %s", table.num_rows, loc.uri)
    return loc.uri


def read_descriptions_table(uri: str, storage: StorageConfig | None = None) -> pa.Table:
    """Every row of every part file, in write order (an empty table with the schema when none)."""
    loc = descriptions_location(uri, storage)
    tables = []
    for path in list_files(loc, suffix=".parquet"):
        part = Location(uri=path, filesystem=loc.filesystem, path=path)
        try:
            table = pq.read_table(io.BytesIO(read_bytes(part)))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"descriptions part '{path}' is not a readable Parquet file: {exc}") from exc
        missing = [n for n in DESCRIPTION_SCHEMA.names if n not in table.column_names]
        if missing:
            raise ValueError(f"descriptions part '{path}' lacks column(s) {missing}")
        tables.append(table.select(DESCRIPTION_SCHEMA.names).cast(DESCRIPTION_SCHEMA))
    if not tables:
        return DESCRIPTION_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def load_descriptions(uri: str, storage: StorageConfig | None = None,
                      include_quarantined: bool = False) -> dict[str, dict[str, Any]]:
    """``{image_id: row}`` with the last non-quarantined row of each image (``parts`` parsed to a dict).

    Images whose rows are all quarantined are left out unless ``include_quarantined`` is set, in which
    case their last quarantined row is given.
    """
    kept: dict[str, dict[str, Any]] = {}
    for row in read_descriptions_table(uri, storage).to_pylist():
        previous = kept.get(row["image_id"])
        if row["quarantined"] and previous is not None and not previous["quarantined"]:
            continue
        kept[row["image_id"]] = asdict(Description.from_row(row))
    if not include_quarantined:
        kept = {k: v for k, v in kept.items() if not v["quarantined"]}
    return kept


def finished_image_ids(uri: str, provenance: str, model: str, prompt_version: str,
                       storage: StorageConfig | None = None) -> set[str]:
    """Images that already hold a row (quarantined or not) made by this describer and prompt version.

    A resumed run skips exactly these, so no request is repeated for a finished image.
    """
    table = read_descriptions_table(uri, storage)
    done = set()
    for row in table.select(["image_id", "provenance", "model", "prompt_version"]).to_pylist():
        if (row["provenance"], row["model"], row["prompt_version"]) == (provenance, model, prompt_version):
            done.add(row["image_id"])
    return done
