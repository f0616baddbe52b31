"""Training progress for the person at the console: rank 0 sends step and epoch events through a Ray queue,
the driver draws one progress bar per epoch and prints one line per epoch, and one line when a lost worker group
was restarted (the workers' own logs stay in Ray's log files)."""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from tqdm import tqdm

from reid.distributed.nodes import placement_line
from reid.distributed.restarts import RestartWatch

logger = logging.getLogger(__name__)

POLL_S = 0.2


class QueueProgress:
    """Rank 0's side: non-blocking puts of ``start``, ``step`` and ``epoch`` events (dropped if the driver lags).
    ``placement`` is the group's ``(node id, address)`` of each rank, sent with ``start``."""

    def __init__(self, events: Any, placement: Sequence[tuple[str, str]] = ()) -> None:
        self.events = events
        self.placement = [list(p) for p in placement]

    def start(self, epoch: int, step: int) -> None:
        """The group has restored its checkpoint (or has none): it trains ``epoch`` next, ``step`` steps done."""
        self._put({"kind": "start", "epoch": epoch, "step": step, "placement": self.placement})

    def step(self, epoch: int, step: int, steps: int, samples_per_s: float) -> None:
        self._put({"kind": "step", "epoch": epoch, "step": step, "steps": steps, "samples_per_s": samples_per_s})

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self._put({"kind": "epoch", "epoch": epoch, "metrics": {k: float(v) for k, v in metrics.items()}})

    def note(self, text: str) -> None:
        """A line for the console as it is (where the workers run)."""
        self._put({"kind": "note", "text": text})

    def _put(self, event: dict[str, Any]) -> None:
        try:
            self.events.put_nowait(event)
        except Exception:  # a full or closed queue must never stop training
            pass


def epoch_line(epoch: int, epochs: int, metrics: Mapping[str, float], select: str) -> str:
    """``epoch 2/4  loss 1.95 (infonce 1.59)  val R1 91.7 mAP 88.0 (images alone R1 60.4 mAP 55.0)  best R1 91.7
    20 s  169 samples/s`` (the part in brackets when the validation gallery is also ranked from its images alone)."""
    parts = [f"epoch {epoch + 1}/{epochs}"]
    if "loss/total" in metrics:
        loss = f"loss {metrics['loss/total']:.3f}"
        if "loss/infonce" in metrics:
            loss += f" (infonce {metrics['loss/infonce']:.3f})"
        parts.append(loss)
    if f"val/{select}" in metrics:
        val = " ".join(f"{k} {metrics[f'val/{k}']:.1f}" for k in ("R1", "mAP") if f"val/{k}" in metrics)
        alone = " ".join(f"{k} {metrics[f'val/image_{k}']:.1f}" for k in ("R1", "mAP") if f"val/image_{k}" in metrics)
        parts.append(f"val {val}" + (f" (images alone {alone})" if alone else ""))
        if f"val/best_{select}" in metrics:
            parts.append(f"best {select} {metrics[f'val/best_{select}']:.1f}")
    if "epoch_seconds" in metrics:
        parts.append(f"{metrics['epoch_seconds']:.0f} s")
    if "samples_per_s" in metrics:
        parts.append(f"{metrics['samples_per_s']:.0f} samples/s")
    return "  ".join(parts)


def run_with_progress(fit: Callable[[], Any], events: Any, epochs: int, select: str,
                      out: TextIO | None = None, watch: RestartWatch | None = None) -> Any:
    """Run ``fit`` in a thread and draw its events until it returns; re-raise what it raised.

    Each worker group's ``start`` prints its placement line, after ``watch``'s line when the group is a restarted
    one (``failure`` events from the controller tell ``watch`` when the previous group failed). An epoch already
    printed is not printed again (a group restarted from an older checkpoint runs it twice; MLflow keeps the first)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fit()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="reid-fit", daemon=True)
    thread.start()
    bar = _Bar(epochs, out)
    printed: set[int] = set()
    try:
        while thread.is_alive() or not _empty(events):
            try:
                event = events.get(timeout=POLL_S)
            except (stdlib_queue.Empty, Exception):
                continue
            kind = event["kind"]
            if kind == "step":
                bar.step(event["epoch"], event["step"], event["steps"], event["samples_per_s"])
                if watch is not None:
                    watch.step(event)
            elif kind == "failure":
                if watch is not None:
                    watch.failure(event)
            elif kind == "start":
                bar.close()
                line = watch.started(event) if watch is not None else None
                placement = [tuple(p) for p in event.get("placement", ())]
                for text in (line, placement_line(placement) if placement else None):
                    if text:
                        tqdm.write(text, file=out)
            elif kind == "note":
                bar.close()
                tqdm.write(event["text"], file=out)
            elif event["epoch"] not in printed:
                printed.add(event["epoch"])
                bar.close()
                tqdm.write(epoch_line(event["epoch"], epochs, event["metrics"], select), file=out)
    finally:
        bar.close()
        thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class _Bar:
    """One tqdm bar per epoch (drawn on a terminal only; tqdm disables itself elsewhere)."""

    def __init__(self, epochs: int, out: TextIO | None) -> None:
        self.epochs, self.out = epochs, out
        self.bar: tqdm | None = None
        self.epoch: int | None = None

    def step(self, epoch: int, step: int, steps: int, samples_per_s: float) -> None:
        if self.bar is None or self.epoch != epoch:
            self.close()
            self.epoch = epoch
            self.bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False,
                            file=self.out, disable=None, dynamic_ncols=True)
        self.bar.n = step
        self.bar.set_postfix_str(f"{samples_per_s:.0f} samples/s", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.epoch = None, None


def _empty(events: Any) -> bool:
    try:
        return bool(events.empty())
    except Exception:
        return True
