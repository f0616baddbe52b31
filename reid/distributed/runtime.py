"""Start or join Ray: a cluster named by ``RAY_ADDRESS`` when set, else a fresh local one on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import ray

log = logging.getLogger(__name__)

VERBOSE_ENV = "REID_VERBOSE"  # set by the command line from --verbose (reid.cli.console)


def ensure_ray(num_cpus: int | None = None, dashboard: bool = True) -> None:
    """Initialise Ray once per process.

    Under ``ray job submit`` (or with ``RAY_ADDRESS`` set) this joins that cluster; otherwise it starts a
    local Ray bound to 127.0.0.1 with token auth off, so a fresh machine and CI start without prompts.
    The dashboard serves the state API that Ray Train's placement-group cleaner polls (without it the
    cleaner logs a warning every few seconds and Ray Tune's cleanup can hang); it costs ~1.5 s at start.
    A local Ray's workers share the host's cores, so OpenMP threads wait passively unless
    ``OMP_WAIT_POLICY`` says otherwise (spinning threads made training 2x slower on 2 cores).
    Unless ``REID_VERBOSE`` is ``1`` (or unset: library callers), workers' output is not forwarded here.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    chatty = os.environ.get(VERBOSE_ENV, "1") != "0"
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray at %s", address)
        ray.init(address=address, log_to_driver=chatty, logging_level=logging.INFO if chatty else logging.WARNING)
        _quiet_ray(chatty)
        return
    log.info("starting a local Ray (num_cpus=%s)", num_cpus)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    port = free_port() if dashboard else None
    if port is not None:
        # The state API (Ray Train's placement-group cleaner uses it) finds its cluster from the environment,
        # and another Ray on the host would confuse its search; every process this Ray starts inherits this.
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        configure_logging=False,
        log_to_driver=chatty,
    )
    _quiet_ray(chatty)


def _quiet_ray(chatty: bool) -> None:
    """Without ``--verbose`` (``REID_VERBOSE=0``): Ray's driver-side loggers at WARNING and no Ray Data
    progress bars; the workers' output, not forwarded, stays in Ray's session log files."""
    if chatty:
        return
    import ray.data

    _cluster_errors_to_log()
    for name in ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": by us
    ray.data.DataContext.get_current().enable_progress_bars = False
    log.info("Ray's and the workers' logs: %s", ray_log_dir())


def _cluster_errors_to_log() -> None:
    """Ray's driver prints every error the cluster publishes (a node marked dead, each worker that died with it)
    on stdout from a thread of its own, whatever ``log_to_driver`` says: after a lost node, paragraphs on the
    console. Without ``--verbose`` those lines go to the log file; the console says what happened in one line
    (:mod:`reid.distributed.restarts`). Ray 2.60 has no setting for it: its thread looks the printer up by name
    in ``ray._private.worker`` at each message, which is where it is replaced."""
    from ray._private import worker

    original = worker.print_to_stdstream
    if getattr(original, "reid_quiet", False):
        return

    def to_log(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix)
            return
        for line in data.get("lines", ()):
            log.info("Ray: %s", line)

    to_log.reid_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_log


def ray_log_dir() -> str:
    """Where this Ray session writes its processes' logs."""
    try:
        return ray._private.worker.global_worker.node.get_logs_dir_path()
    except Exception:  # a joined cluster's logs live on its nodes
        return "the Ray nodes' /tmp/ray/session_latest/logs"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listens on now (a stack's servers each need one)."""
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


NO_RESTARTS = {"max_restarts": 0}  # actor-pool stages whose jobs resume by their own output


@contextmanager
def remote_args_allowed() -> Iterator[None]:
    """Around ``map_batches(..., **NO_RESTARTS)``: Ray Data passes an actor pool's stage by reference, so Ray
    warns (on the console, from C++) that a restarted actor could not rebuild it unless restarts are off; Ray
    2.60 (pinned) has no named parameter for that and flags ``ray_remote_args`` as deprecated."""
    from ray.util.annotations import RayDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RayDeprecationWarning)
        yield
