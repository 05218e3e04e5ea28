"""catdiff and diffusers each measured in a process of its own, the way their users run them.

``catdiff.train`` and ``catdiff.sample`` set catdiff's allocator settings
(``catdiff.allocator``); diffusers' users get the C library's defaults. :class:`OwnProcess`
builds a training step or a sampling chain of either in a spawned Python process (same
environment, same torch thread count), with or without catdiff's settings, and runs it on
request, so the bench can time the two interleaved, call by call. A call costs one pipe round
trip (well under a millisecond) on top of the work.

Both sides get a process of their own, not only diffusers: on this project's AMD EPYC VM a
spawned process timed 5-15% slower when the spawning process had trained a step itself
(diffusers' fp32 step 1.78-2.01 s against 1.65-1.76 s standalone; from a parent that had run
nothing, 1.65-1.67 s), so timing one side in the bench's busy process and the other in a child
would favour the first.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import torch


def _build(kind: str, args: tuple[Any, ...]) -> Callable[[], object]:
    from catdiff.benchmarks import peer, sampling, train_speed

    if kind == "diffusers-train":
        unet_kwargs, precision, batch = args
        x0 = train_speed.image_batch(batch)
        return peer.train_step_fn(peer.build_unet(unet_kwargs), precision, lambda: x0)
    if kind == "diffusers-ddim":
        unet_kwargs, steps, timed_steps, n, precision = args
        return peer.ddim_sample_fn(peer.build_unet(unet_kwargs), steps, timed_steps, n, precision)
    if kind == "catdiff-train":
        unet_kwargs, optimizer, channels_last, precision, batch = args
        x0 = train_speed.image_batch(batch)
        module = train_speed.build_module(unet_kwargs, optimizer, channels_last)
        return train_speed.train_step_fn(module, precision, lambda: x0)
    if kind == "catdiff-sample":
        from catdiff.diffusion.build import build_diffusion
        from catdiff.models import UNet

        unet_kwargs, sampler_kind, steps, timed_steps, n, precision = args
        torch.manual_seed(0)
        sampler = sampling.sampler_for(sampler_kind, steps, timed_steps)
        return sampling.sample_fn(UNet(**unet_kwargs), build_diffusion(), sampler, n, precision)
    raise ValueError(f"unknown request {kind!r}")


def _serve(conn: Any, threads: int, catdiff_allocator: bool) -> None:
    """The child: build functions and run them when asked, until told to stop."""
    if catdiff_allocator:
        from catdiff.allocator import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(threads)
    fns: list[Callable[[], object]] = []
    while True:
        kind, args = conn.recv()
        if kind == "close":
            return
        try:
            if kind == "run":
                fns[args[0]]()
                conn.send(("ok", None))
            else:
                fns.append(_build(kind, args))
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

    def _call(self, kind: str, *args: Any) -> Any:
        try:
            self._conn.send((kind, args))
            status, value = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as e:
            code = self._process.exitcode
            raise RuntimeError(f"the benchmark's own process ended (exit code {code})") from e
        if status == "error":
            raise RuntimeError(f"in the benchmark's own process: {value}")
        return value

    def _remote(self, kind: str, *args: Any) -> Callable[[], None]:
        index = self._call(kind, *args)
        return lambda: self._call("run", index)

    def diffusers_train_step(
        self, unet_kwargs: dict[str, Any], precision: str, batch: int
    ) -> Callable[[], None]:
        """``peer.train_step_fn`` on a fixed batch, built and run in the child."""
        return self._remote("diffusers-train", dict(unet_kwargs), precision, batch)

    def diffusers_ddim(
        self, unet_kwargs: dict[str, Any], steps: int, timed_steps: int, n: int, precision: str
    ) -> Callable[[], None]:
        """``peer.ddim_sample_fn``, built and run in the child."""
        return self._remote("diffusers-ddim", dict(unet_kwargs), steps, timed_steps, n, precision)

    def catdiff_train_step(
        self,
        unet_kwargs: dict[str, Any],
        optimizer: str,
        channels_last: bool,
        precision: str,
        batch: int,
    ) -> Callable[[], None]:
        """``train_speed.train_step_fn`` on a fixed batch, built and run in the child."""
        args = (dict(unet_kwargs), optimizer, channels_last, precision, batch)
        return self._remote("catdiff-train", *args)

    def catdiff_sample(
        self,
        unet_kwargs: dict[str, Any],
        sampler_kind: str,
        steps: int,
        timed_steps: int,
        n: int,
        precision: str,
    ) -> Callable[[], None]:
        """``sampling.sample_fn`` of the first ``timed_steps`` of a chain, run in the child."""
        args = (dict(unet_kwargs), sampler_kind, steps, timed_steps, n, precision)
        return self._remote("catdiff-sample", *args)

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
