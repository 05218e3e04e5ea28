"""catdiff and diffusers each measured in a process of its own, the way their users run them.

``catdiff.train`` and ``catdiff.sample`` set catdiff's allocator settings
(``catdiff.allocator``); diffusers' users get the C library's defaults. :class:`OwnProcess`
builds a training step or a sampling chain of either in a spawned Python process (same
environment, same torch thread count), with or without catdiff's settings, using the builders
the bench's own process uses (``experiments.bench.workloads``), and runs it on request, so the
bench can time the two interleaved, call by call. A call costs one pipe round trip on top of
the work (to a spawned echo process: median 24 us, 99th percentile 83 us).

Both sides get a process of their own, not only diffusers: on this project's AMD EPYC VM a
spawned process timed 6-18% slower when the spawning process had trained a step itself
(diffusers' fp32 step, 5 alternating pairs: 1.78-2.01 s against 1.65-1.76 s standalone; from a
parent that had run nothing, 1.65-1.67 s), so timing one side in the bench's busy process and
the other in a child would favour the first.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import torch


def _serve(conn: Any, threads: int, catdiff_allocator: bool) -> None:
    """The child: build functions and run them when asked, until told to stop."""
    if catdiff_allocator:
        from catdiff.allocator import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(threads)
    from experiments.bench.workloads import BUILDERS

    fns: list[Callable[[], object]] = []
    while True:
        kind, payload = conn.recv()
        if kind == "close":
            return
        try:
            if kind == "run":
                fns[payload]()
                conn.send(("ok", None))
            else:
                fns.append(BUILDERS[kind](**payload))
                conn.send(("ok", len(fns) - 1))
        except Exception as e:  # sent back: the bench reports it and stops
            conn.send(("error", f"{type(e).__name__}: {e}"))


class OwnProcess:
    """A spawned process that runs benchmark functions for this one.

    ``catdiff_allocator``: whether the child starts with catdiff's allocator settings (as
    ``catdiff.train`` does) or with the C library's defaults (as a diffusers user's process).
    """

    def __init__(self, catdiff_allocator: bool, threads: int | None = None) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: nothing inherited from this heap
        self._conn, child = ctx.Pipe()
        threads = torch.get_num_threads() if threads is None else threads
        args = (child, threads, catdiff_allocator)
        self._process = ctx.Process(target=_serve, args=args, daemon=True)
        self._process.start()
        child.close()

    def _call(self, kind: str, payload: Any) -> Any:
        try:
            self._conn.send((kind, payload))
            status, value = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as e:
            code = self._process.exitcode
            raise RuntimeError(f"the benchmark's own process ended (exit code {code})") from e
        if status == "error":
            raise RuntimeError(f"in the benchmark's own process: {value}")
        return value

    def remote(self, builder: str, **kwargs: Any) -> Callable[[], None]:
        """``workloads.BUILDERS[builder](**kwargs)``, built in the child; each call of the
        returned function runs it there once and waits for it."""
        index = self._call(builder, kwargs)
        return lambda: self._call("run", index)

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("close", ()))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()

    def __enter__(self) -> OwnProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
