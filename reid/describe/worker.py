"""Describe a batch of image records with bounded threads and append the rows as one part file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import openai

from reid.describe.config import DescribeConfig
from reid.describe.factory import Describer, build_describer, describe_record
from reid.describe.mllm import ApiKey, EndpointFatalError
from reid.describe.schema import Description
from reid.describe.style_store import StyleBook
from reid.describe.table import append_descriptions
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)
RESULT_COLUMNS = ("image_id", "status", "reason", "prompt_tokens", "completion_tokens", "cost_usd")
"""One result per image: status ``ok``, ``quarantined`` (rows written, maybe with a fallback) or
``failed`` (endpoint errors outlasted the retries; nothing written, a re-run asks again)."""


@dataclass(frozen=True)
class ImageResult:
    image_id: str
    status: str
    reason: str
    rows: tuple[Description, ...]

    def columns(self) -> tuple[Any, ...]:
        tokens_in = sum(r.prompt_tokens for r in self.rows)
        tokens_out = sum(r.completion_tokens for r in self.rows)
        return (self.image_id, self.status, self.reason, tokens_in, tokens_out, sum(r.cost_usd for r in self.rows))


def rows_of(batch: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Columnar ``{name: values}`` (a Ray Data numpy/pandas batch or plain lists) -> a list of row dicts."""
    names = list(batch)
    if not names:
        return []
    return [dict(zip(names, values, strict=True)) for values in zip(*(list(batch[n]) for n in names), strict=True)]


class DescribeWorker:
    """Callable on a columnar batch of image records (``image_id``, ``image``, ``captions``).

    Up to ``threads`` images are described at once; the batch's rows go to one new part file under
    ``<uri>/descriptions`` before the call returns, so finished images survive a killed job.
    Returns ``{column: list}`` with :data:`RESULT_COLUMNS`, one entry per image.
    """

    def __init__(self, uri: str, cfg: DescribeConfig, style_book: StyleBook, threads: int,
                 storage: StorageConfig | None = None, describer: Describer | None = None,
                 api_key: ApiKey | None = None) -> None:
        self.uri, self.cfg, self.style_book, self.storage = uri, cfg, style_book, storage
        self.describer = describer if describer is not None else build_describer(cfg, api_key)
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="describe")

    def describe_one(self, record: Mapping[str, Any]) -> ImageResult:
        image_id = str(record["image_id"])
        style = self.style_book.style_for(image_id)
        exemplars = self.style_book.exemplars_for(style, self.cfg.num_exemplars)
        try:
            rows = describe_record(self.describer, {**record, "captions": list(record["captions"])}, style,
                                   exemplars)
        except EndpointFatalError:
            raise
        except (openai.OpenAIError, OSError, json.JSONDecodeError) as exc:  # endpoint trouble outlasted retries
            reason = f"{type(exc).__name__}: {getattr(exc, 'status_code', '') or 'no answer'}"
            log.warning("image %s: %s (left for a re-run)", image_id, reason)
            return ImageResult(image_id, "failed", reason, ())
        except ValueError as exc:  # the record itself is bad (e.g. not a JPEG/PNG): asking again cannot help
            reason = f"bad input: {exc}"
            log.warning("image %s: %s", image_id, reason)
            return ImageResult(image_id, "quarantined", reason, (self._quarantined(image_id, style, reason),))
        quarantined = [r for r in rows if r.quarantined]
        status = "quarantined" if quarantined else "ok"
        return ImageResult(image_id, status, quarantined[0].reason if quarantined else "", tuple(rows))

    def _quarantined(self, image_id: str, style: int, reason: str) -> Description:
        d = self.describer
        return Description(image_id=image_id, identity="", clothing="", provenance=d.provenance, model=d.model,
                           prompt_version=d.prompt_version, style_id=style, quarantined=True, reason=reason)

    def write(self, results: Sequence[ImageResult]) -> None:
        """Append the rows of ``results`` as one part file."""
        append_descriptions(self.uri, [row for r in results for row in r.rows], self.storage)

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        results = list(self.pool.map(self.describe_one, rows_of(batch)))
        self.write(results)
        return result_columns(results)

    def stream(self, records: Iterable[Mapping[str, Any]], write_every: int) -> Iterator[ImageResult]:
        """Describe ``records`` keeping ``threads`` requests in flight at all times (no per-batch barrier).

        Finished results are appended every ``write_every`` images and yielded once written.
        """
        source, in_flight, done = iter(records), set(), []
        while True:
            while len(in_flight) < self.threads and (record := next(source, None)) is not None:
                in_flight.add(self.pool.submit(self.describe_one, record))
            if not in_flight:
                break
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            done.extend(f.result() for f in finished)
            if len(done) >= write_every:
                self.write(done)
                yield from done
                done = []
        self.write(done)
        yield from done


def result_columns(results: Sequence[ImageResult]) -> dict[str, list[Any]]:
    """``{column: values}`` with :data:`RESULT_COLUMNS`, one entry per image."""
    columns: dict[str, list[Any]] = {name: [] for name in RESULT_COLUMNS}
    for result in results:
        for name, value in zip(RESULT_COLUMNS, result.columns(), strict=True):
            columns[name].append(value)
    return columns
