"""One search thread per index, with micro-batching: how the HTTP server searches safely and fast.

An :class:`~kosearch.index.Index` must not be searched from several threads at once: the
tokenizer of the model, Kiwi and the lazily loaded parts are shared objects. So every search of
a :class:`SearchBatcher` runs on its own single worker thread, and callers get a
:class:`~concurrent.futures.Future`. That thread is also what makes batching free:

* with no load, a job runs as soon as it is submitted (no waiting window by default);
* while a search runs, new jobs queue up; when it ends the worker takes every queued job,
  groups them by ``k`` and :class:`~kosearch.settings.SearchOptions` and answers each group
  with ONE :meth:`~kosearch.index.Index.search_batch` call, so the model encodes all their
  queries in one forward pass and FAISS/BM25 search them together.

A group whose batched call fails (say one job asked for lexical search on an index without
BM25) is retried job by job, so one bad job never fails its neighbours.

Example:
    >>> with SearchBatcher(index) as batcher:                       # doctest: +SKIP
    ...     hits = batcher.submit(["한글은 누가 만들었나요?"], k=3).result()[0]
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kosearch.settings import SearchOptions

if TYPE_CHECKING:
    from kosearch.index import Index
    from kosearch.types import Hit

log = logging.getLogger(__name__)

DEFAULT_MAX_QUERIES = 256  # queries per search_batch call (bounds the encoder's batch)


@dataclass(frozen=True, slots=True)
class SearchKey:
    """The parameters that must agree for two jobs to share one ``search_batch`` call."""

    k: int
    options: SearchOptions


@dataclass(slots=True)
class _Job:
    queries: list[str]
    key: SearchKey
    future: Future[list[list[Hit]]]
    filter: Mapping[str, Any] | None = None  # per job: jobs with other filters still batch


class SearchBatcher:
    """Runs the searches of one index on one worker thread, batching concurrent jobs.

    Args:
        index: The index to search; nothing else should search it while the batcher runs.
        batching: Merge queued jobs with equal parameters into one call (``False``: one call
            per job, in arrival order).
        max_queries: The most queries in one ``search_batch`` call; a larger job runs alone.
        window_s: After the first job of a batch arrives, wait this long for more (``0``: do not
            wait; jobs still batch whenever they queue behind a running search).
    """

    def __init__(
        self,
        index: Index,
        *,
        batching: bool = True,
        max_queries: int = DEFAULT_MAX_QUERIES,
        window_s: float = 0.0,
    ) -> None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {max_queries}")
        if window_s < 0:
            raise ValueError(f"window_s must not be negative, got {window_s}")
        self._index = index
        self._batching = batching
        self._max_queries = max_queries
        self._window_s = window_s
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._calls = 0
        self._queries = 0

    # ------------------------------------------------------------------ the public side
    def submit(
        self, queries: Sequence[str], k: int, options: SearchOptions | None = None, *,
        filter: Mapping[str, Any] | None = None,
    ) -> Future[list[list[Hit]]]:
        """Queue a search; the future gives one hit list per query, or the search's error.

        Jobs with equal ``k`` and ``options`` share one ``search_batch`` call.

        ``filter`` (a metadata filter for every query of the job) does not keep jobs apart:
        one ``search_batch`` call takes one filter per query.

        Raises:
            RuntimeError: the batcher is closed.
        """
        options = options or SearchOptions()
        if options.mode is None:  # so that "no mode" and the default mode batch together
            options = replace(options, mode=self._index.default_mode.value)
        job = _Job(list(queries), SearchKey(k, options), Future(), filter)
        with self._cond:
            if self._closed:
                raise RuntimeError("the search worker is shut down")
            self._jobs.append(job)
            self._ensure_thread()
            self._cond.notify()
        return job.future

    def search(
        self, queries: Sequence[str], k: int, options: SearchOptions | None = None, *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """:meth:`submit` and wait for the result."""
        return self.submit(queries, k, options, filter=filter).result()

    @property
    def pending(self) -> int:
        """How many submitted jobs have not been taken by the worker yet."""
        with self._cond:
            return len(self._jobs)

    def stats(self) -> dict[str, int]:
        """``{"searches": search_batch calls so far, "queries": queries answered}``."""
        with self._cond:
            return {"searches": self._calls, "queries": self._queries}

    def start(self) -> None:
        """Start the worker thread now (``submit`` starts it too, on first use)."""
        with self._cond:
            self._ensure_thread()

    def close(self, timeout: float | None = None) -> None:
        """Refuse new jobs, finish the queued ones, and stop the worker thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> SearchBatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the worker thread
    def _ensure_thread(self) -> None:
        """Start the worker if it is not running (the caller holds the lock)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._work, name="kosearch-search", daemon=True
            )
            self._thread.start()

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            for key, group in _grouped(jobs):
                for chunk in _chunks(group, self._max_queries):
                    self._run(key, chunk)

    def _take(self) -> list[_Job] | None:
        """Block until there is work; ``None`` once closed and drained."""
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if not self._jobs:
                return None
            if not self._batching:
                jobs = [self._jobs.popleft()]
            else:
                deadline = time.monotonic() + self._window_s
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                jobs = list(self._jobs)
                self._jobs.clear()
        # A job whose caller went away (cancelled future) is dropped here.
        return [job for job in jobs if job.future.set_running_or_notify_cancel()]

    def _run(self, key: SearchKey, jobs: list[_Job]) -> None:
        queries = [q for job in jobs for q in job.queries]
        filters = [job.filter for job in jobs for _ in job.queries]
        extra = {"filter": filters} if any(f is not None for f in filters) else {}
        try:
            results = self._index.search_batch(
                queries, key.k, **key.options.keywords(), **extra
            )
        except Exception as error:  # noqa: BLE001 - delivered to the caller, never lost
            if len(jobs) > 1:
                for job in jobs:  # one bad job must not fail the others
                    self._run(key, [job])
                return
            jobs[0].future.set_exception(error)
            return
        with self._cond:
            self._calls += 1
            self._queries += len(queries)
        offset = 0
        for job in jobs:
            job.future.set_result(results[offset : offset + len(job.queries)])
            offset += len(job.queries)


def _grouped(jobs: list[_Job]) -> Iterator[tuple[SearchKey, list[_Job]]]:
    """Jobs by key, keys in order of their first job, jobs in arrival order."""
    groups: dict[SearchKey, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.key, []).append(job)
    yield from groups.items()


def _chunks(jobs: list[_Job], max_queries: int) -> Iterator[list[_Job]]:
    """Consecutive runs of jobs holding at most ``max_queries`` queries (a bigger job alone)."""
    chunk: list[_Job] = []
    size = 0
    for job in jobs:
        if chunk and size + len(job.queries) > max_queries:
            yield chunk
            chunk, size = [], 0
        chunk.append(job)
        size += len(job.queries)
    if chunk:
        yield chunk

