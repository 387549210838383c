"""A value made on first use, or in a background thread from an explicit start on.

A one-shot query needs several slow things at once: the query encoder (onnxruntime session and
tokenizer, ~0.5 s) and, for hybrid search, Kiwi (~0.8 s). Their loaders spend much of that time
outside the GIL, so starting them side by side on two cores saves a third of the wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """``make()``'s result, made on the first :meth:`get` or in a thread from :meth:`start` on.

    Exceptions raised by ``make`` are raised by :meth:`get`, in the caller's thread; a failed
    make is tried again by the next :meth:`get` or :meth:`start`.

    Example:
        >>> value = Lazy(lambda: sum(range(10)), name="sum")
        >>> value.start()          # returns at once
        >>> value.get()            # waits for the thread
        45
    """

    def __init__(self, make: Callable[[], T], *, name: str) -> None:
        self._make = make
        self._name = name
        self._lock = threading.Lock()
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, value: T, *, name: str) -> Lazy[T]:
        """One whose value is already made."""
        made: Lazy[T] = cls(lambda: value, name=name)
        made._value, made._done = value, True
        return made

    @property
    def done(self) -> bool:
        """Whether the value has been made."""
        return self._done

    def start(self) -> None:
        """Begin making the value in a background thread, unless begun or done."""
        with self._lock:
            if self._done or self._thread is not None:
                return
            # Not a daemon: an exiting interpreter waits for the thread rather than tearing
            # down under it while it is inside a C extension's loader.
            self._thread = threading.Thread(target=self._run, name=f"kosearch-{self._name}")
            self._thread.start()

    def get(self) -> T:
        """The value: waits for a background make, or makes it now."""
        with self._lock:
            if not self._done:
                if self._thread is not None:
                    self._thread.join()
                    self._thread = None
                else:
                    self._run()
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
            return self._value  # type: ignore[return-value]

    def _run(self) -> None:
        try:
            self._value = self._make()
            self._done = True
        except BaseException as e:  # noqa: BLE001 - raised again by get(), in its caller's thread
            self._error = e
