"""Reaching a Ray cluster for the ``ray`` indexing engine, and sizing its actor pool.

:func:`connect` joins the cluster at ``--ray-address`` (else ``$RAY_ADDRESS``), or starts a
local Ray when neither is set; an address that cannot be reached is a one-line
:class:`~kosearch.errors.ConfigError` naming it, checked with a short TCP probe before Ray's
own (much longer) connection timeout. Ray is imported here and in the other ``ray_*`` modules
only, inside functions, so ``import kosearch`` never loads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kosearch.errors import ConfigError, KosearchError, MissingDependencyError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
#: CPUs the tasks that read and parse the corpus ask for (they are light but need a slot).
READ_CPUS = 0.1
#: CPUs the actors leave free: the read tasks', and one for Ray Data's streaming repartition
#: (which asks for a whole CPU), or those tasks would wait for the actors forever.
SPARE_CPUS = 1.0 + 2 * READ_CPUS
#: Cores of a CPU-only cluster per encoding actor by default (as kosearch's own worker pool).
CPUS_PER_WORKER = 4


@dataclass(frozen=True)
class RayOptions:
    """How a run uses Ray.

    Attributes:
        address: The cluster (``host:port``, ``ray://host:port`` or ``auto``); None:
            ``$RAY_ADDRESS``, else a local Ray started for the run.
        workers: Encoding actors; None: one per ``gpus_per_worker`` GPUs on a GPU cluster,
            else one per 4 CPUs (at least one).
        gpus_per_worker: GPUs each actor holds (0: encode on CPUs).
        docs_per_call: Documents chunked and encoded per actor call; None: as many as
            :func:`call_size` gives.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    docs_per_call: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker}")
        if self.docs_per_call is not None and self.docs_per_call < 1:
            raise ConfigError(f"docs_per_call must be at least 1, got {self.docs_per_call}")


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the engine needs Ray Data, not only Ray core
    except ImportError as error:
        raise MissingDependencyError(
            "--engine ray needs Ray Data; install it with: pip install 'kosearch[ray]'"
        ) from error
    return ray


def connect(address: str | None) -> bool:
    """Join (or start) Ray; True when this call started or joined it (so it should shut down).

    A process already connected (``ray.init`` called by the application, or a test) is used
    as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        configure_data()
        return False
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target is not None and target not in ("auto", "local"):
        _probe(target)
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if target is None or target == "local":
        options["include_dashboard"] = False
    try:
        ray.init(address=target, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        where = target or "a new local Ray"
        reason = first_line(error)
        raise ConfigError(f"cannot reach the Ray cluster at {where} ({reason})") from None
    configure_data()
    return True


def configure_data() -> None:
    """Ray Data settings of a run: blocks keep their order, no progress bars of Ray's own, and
    no issue detectors (every 30 s they log paragraphs of advice on Ray Data's own options,
    such as a memory reservation per actor, which a kosearch user cannot pass)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.issue_detectors_config.detectors = []


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """Ray Data's INFO and WARNING lines kept off the console while a run uses it (its errors
    still show; its session log file keeps everything). kosearch reports the run itself."""
    handlers = [h for h in logging.getLogger("ray.data").handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(max(handler.level, logging.ERROR))
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)


def disconnect(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


def _probe(address: str) -> None:
    """Fail fast, naming ``address``, when nothing listens there."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: expected HOST:PORT, ray://HOST:PORT "
            "or auto"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({reason})") from None


def pool_size(options: RayOptions) -> tuple[int, float, float]:
    """``(actors, CPUs each, GPUs each)`` of the encoding pool on the connected cluster.

    Actors share the cluster's CPUs less :data:`SPARE_CPUS`, so that reading never waits for
    a slot the actors hold. (A CPU slot is Ray's bookkeeping: each actor runs torch on
    ``max(1, round(CPUs))`` threads.)
    """
    import ray

    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1.0))
    gpus = float(resources.get("GPU", 0.0))
    per_gpu = options.gpus_per_worker
    if per_gpu > 0:
        if gpus < per_gpu:
            raise ConfigError(
                f"--gpus-per-worker {per_gpu:g} needs GPUs, but the Ray cluster has {gpus:g}"
            )
        workers = options.workers or max(1, int(gpus // per_gpu))
        return workers, min(1.0, max(0.1, (cpus - SPARE_CPUS) / workers)), per_gpu
    workers = options.workers or max(1, int(cpus // CPUS_PER_WORKER))
    return workers, max(0.1, (cpus - SPARE_CPUS) / workers), 0.0


def call_size(documents: int, workers: int, limit: int) -> int:
    """Documents per actor call: as many as fit ``limit``, in a whole number of calls per actor.

    An actor's encoder sorts a call's passages by length before batching them, so a larger
    call wastes less padding (NSMC reviews, 32 a batch: 20% more tokens in calls of 256 than
    in windows of 2,048, a local build's ``limit``). Calls of one size, the same number for
    every actor, keep the actors busy to the end.
    """
    workers = max(1, workers)
    rounds = max(1, -(-documents // (workers * limit)))
    return max(1, -(-documents // (workers * rounds)))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def kosearch_cause(error: BaseException) -> KosearchError | None:
    """The kosearch error a Ray task raised, found in the chain Ray wraps it in."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, KosearchError):
            return item
        todo += [getattr(item, "cause", None), item.__cause__, item.__context__]
    return _from_text(str(error))


def _from_text(text: str) -> KosearchError | None:
    """A kosearch error named in a Ray traceback's text (Ray drops the exception's cause)."""
    import re

    from kosearch import errors

    found = re.findall(r"kosearch\.errors\.(\w+): (.+)", text)
    if not found:
        return None
    name, message = found[0]
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, KosearchError)):
        return None
    return kind(message.strip())
