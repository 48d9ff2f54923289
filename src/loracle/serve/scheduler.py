"""One worker thread owns the model; requests take turns at it, one decoding step each.

There is one model and two cores, so generation is serial — but not first-come-first-served: every
running request (up to `max_interleaved`) advances by one step in turn, with its own adapters
activated for that step. A short question asked during a long answer gets its first token after one
step of each running request instead of after the whole long answer. Each request keeps its own KV
cache inside its generator, so interleaving never mixes their states. The serve benchmark measures
interleaved against first-come-first-served (max_interleaved=1).

The event loop never runs model code: `stream()` submits a job and awaits the pieces the worker
hands back through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from loracle.adapters.pool import AdapterPool, AdapterSpec

log = logging.getLogger(__name__)


@dataclass
class Job:
    spec: AdapterSpec
    steps: Iterator[Any]
    deliver: Callable[[Any], None]
    finish: Callable[[BaseException | None], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    release: Callable[[], None] = lambda: None


class Scheduler:
    def __init__(self, pool: AdapterPool, max_interleaved: int = 8) -> None:
        self.pool = pool
        self.max_interleaved = max(1, max_interleaved)
        self._incoming: queue.Queue[Job | None] = queue.Queue()
        self._running: list[Job] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="loracle-generate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping = True
        self._incoming.put(None)
        self._thread.join(timeout=10)

    def pending(self) -> int:
        """Requests running or waiting for their turn."""
        return len(self._running) + self._incoming.qsize()

    def submit(self, job: Job) -> None:
        if self._stopping:
            raise RuntimeError("the server is shutting down")
        self._incoming.put(job)

    async def stream(self, spec: AdapterSpec, make_steps: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
        """Run `make_steps()` on the worker with `spec` active; yield what each step produces."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                loop.call_soon_threadsafe(pieces.put_nowait, (kind, value))

        pin = self.pool.pinned(spec)
        await asyncio.to_thread(pin.__enter__)  # may load adapters from disk: not on the event loop
        job = Job(
            spec,
            _lazy(make_steps),
            deliver=lambda value: put("item", value),
            finish=lambda error: put("end", error),
            release=lambda: pin.__exit__(None, None, None),
        )
        self.submit(job)
        try:
            while True:
                kind, value = await pieces.get()
                if kind == "end":
                    if value is not None:
                        raise value
                    return
                yield value
        finally:
            job.cancelled.set()

    async def run(self, spec: AdapterSpec, call: Callable[[], Any]) -> Any:
        """Run one blocking call on the worker (e.g. a learner's answer) with `spec` active."""
        results = [value async for value in self.stream(spec, lambda: _once(call))]
        return results[0] if results else None

    def _work(self) -> None:
        while True:
            self._admit(block=not self._running)
            if self._stopping:
                for job in self._running:
                    self._end(job, RuntimeError("the server is shutting down"))
                return
            for job in list(self._running):
                self._step(job)

    def _admit(self, block: bool) -> None:
        while len(self._running) < self.max_interleaved:
            try:
                job = self._incoming.get(block=block)
            except queue.Empty:
                return
            if job is None:
                return
            self._running.append(job)
            block = False

    def _step(self, job: Job) -> None:
        if job.cancelled.is_set():
            self._end(job, None)
            return
        try:
            # inference mode around every step, not only inside each generator: generators interleaved on one
            # thread enter and leave it out of order, which would resume one of them outside it
            with self.pool.lock, torch.inference_mode():
                self.pool.activate(job.spec)
                value = next(job.steps)
        except StopIteration:
            self._end(job, None)
            return
        except Exception as exc:  # a failed request must not take the worker down with it
            log.exception("generation failed")
            self._end(job, exc)
            return
        job.deliver(value)

    def _end(self, job: Job, error: BaseException | None) -> None:
        self._running.remove(job)
        with contextlib.suppress(Exception):
            close = getattr(job.steps, "close", None)
            if close:
                close()
        job.release()
        job.finish(error)


def _lazy(make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Build the iterator on the worker (building it may already touch the model)."""
    yield from make()


def _once(call: Callable[[], Any]) -> Iterator[Any]:
    yield call()
