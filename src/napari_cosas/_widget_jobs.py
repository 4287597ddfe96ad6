"""The dock widget's background work: one job at a time in a napari worker thread, and the torch
thread counts a click runs with.

A job is a function run off the GUI thread (a segmentation, a click embedding, a click, an
export); its result is handed to a callback on the GUI thread. While a job runs the runner is
``busy``; the panel is told so only once a job has run ``BUSY_SHOWN_AFTER_MS``, so that a click,
usually done sooner, does not grey and restore the buttons (two repaints of the window while
its model runs, which hold the model up: ``benchmarks/viewer_worker_load.md``). When the viewer
closes, :meth:`JobRunner.shutdown` stops taking work and waits for the running job, so that no
worker thread outlives the viewer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer, Signal

#: How long a job runs before the panel shows it as busy (milliseconds).
BUSY_SHOWN_AFTER_MS = 150


class Cancelled(Exception):
    """Raised in a worker when the viewer closes (its progress callback stops the job)."""


class Progress(QObject):
    """Carries ``(done, total)`` from a worker thread to the GUI thread (queued signal)."""

    changed = Signal(int, int)


class JobRunner:
    """Runs jobs in napari worker threads, one at a time.

    Args:
        on_busy: called on the GUI thread with ``True`` once a job has run ``BUSY_SHOWN_AFTER_MS``,
            and with ``False`` when it ends after that (``busy`` itself is set at once).
        on_finished: called on the GUI thread after each job (successful or not), with the job's
            ``then`` callback (or ``None``), unless the viewer is closing.
        on_error: called on the GUI thread with a job's exception, unless the viewer is closing.
    """

    def __init__(
        self,
        *,
        on_busy: Callable[[bool], None],
        on_finished: Callable[[Callable[[], None] | None], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        self.busy = False
        self.closing = False
        self.progress = Progress()
        self._on_busy = on_busy
        self._on_finished = on_finished
        self._on_error = on_error
        self._jobs_done: list[threading.Event] = []
        self._shown_busy = False
        self._busy_timer = QTimer()
        self._busy_timer.setSingleShot(True)
        self._busy_timer.setInterval(BUSY_SHOWN_AFTER_MS)
        self._busy_timer.timeout.connect(self._show_busy)

    def start(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run ``func(*args)`` in a worker thread; ``on_done(result)`` runs on the GUI thread, then
        ``on_finished(then)`` once the worker has finished (successfully or not)."""
        self._set_busy(True)
        done = threading.Event()

        def job() -> Any:
            try:
                return func(*args)
            except Cancelled:
                return Cancelled
            finally:
                done.set()

        def returned(result: Any) -> None:
            if not self.closing and result is not Cancelled:
                on_done(result)

        worker = create_worker(job, _start_thread=False)
        worker.returned.connect(returned)
        worker.errored.connect(self._errored)
        worker.finished.connect(lambda: self._finished(done, then))
        self._jobs_done.append(done)
        worker.start()

    def check_cancel(self, done: int, total: int) -> None:
        """Progress callback of a segmentation (worker thread): reports ``(done, total)`` windows,
        raises `Cancelled` once the viewer is closing."""
        if self.closing:
            raise Cancelled
        self.progress.changed.emit(done, total)

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop taking work and wait for the running job (a segmentation stops at its next window)."""
        self.closing = True
        self._busy_timer.stop()
        for done in list(self._jobs_done):
            done.wait(timeout_s)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        if busy:
            self._busy_timer.start()
            return
        self._busy_timer.stop()
        if self._shown_busy:
            self._shown_busy = False
            self._on_busy(False)

    def _show_busy(self) -> None:
        if self.busy and not self.closing:
            self._shown_busy = True
            self._on_busy(True)

    def _finished(self, done: threading.Event, then: Callable[[], None] | None) -> None:
        self._jobs_done.remove(done)
        if self.closing:  # the panel's Qt objects may be gone
            return
        self._set_busy(False)
        self._on_finished(then)

    def _errored(self, exc: Exception) -> None:
        if not self.closing:
            self._on_error(exc)


def click_threads() -> int:
    """Torch threads for a click: one core is left to napari's GUI thread, which paints the
    mask. On a busy 2-core machine two threads made the click model 3-4x slower than one
    (threads waiting for each other on a shared core; ``benchmarks/viewer_click.md``)."""
    import torch

    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))


def gui_torch_threads() -> int:
    """The calling thread's torch intra-op thread count (read on the GUI thread)."""
    import torch

    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int, restore: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then set ``restore`` again.

    torch keeps the count per calling thread (OpenMP and MKL thread-local settings) plus a
    default for threads started later, which ``set_num_threads`` also sets. ``restore`` is the
    count the GUI thread had (read there when the job was made), so afterwards every thread
    started later gets it again; the GUI thread and other running threads keep theirs throughout
    (only a thread started during the block would inherit ``n``).
    """
    import torch

    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(restore)
