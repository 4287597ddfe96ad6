"""The dock widget's clicks: each runs the click model in a worker, one at a time; clicks taken
while a job runs are queued (shown at once, paler) and run after it, in order, on whichever
patch they were made. Clicks are ``(row, col)`` image pixels.

The GUI thread's share of a click is split over separate turns of Qt's event loop, so that mouse
events and paints run between them: the press and release (napari's), the new mask in the labels
layer, then the click's point, then the panel's message and numbers. Whatever the GUI thread does
while the model runs holds the model up for about as long (it keeps the GIL, and a repaint of the
window runs inside napari's Python event handler; ``benchmarks/viewer_worker_load.md``): drawing
a new point costs the click about 50 ms. So a running click shows its point (paler) and its
message only when its mask has not come within ``RUNNING_FEEDBACK_AFTER_MS``; a quicker click
shows them in the turn after its mask. Queued clicks show their points at once.

A click's model starts at the mouse press, not at the release (:meth:`ClickQueue.press`), when no
job runs: a hand holds a click for about 0.1 s, which the model then has already used. It starts
in the event-loop turn after the press, not inside napari's handling of it: a press makes vispy
render the scene for picking and then repaint the canvas, and with the model beside them on a
2-core machine those took more than 50 ms for most clicks (``benchmarks/viewer_click_after_press.md``). The
release confirms the click (:meth:`ClickQueue.add`), and its mask is shown as soon as the model
is done; a drag (napari's pan) drops it (:meth:`ClickQueue.cancel_press`), and its result is never
applied. A result computed on a mask that changed before the release is computed again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer

from ._widget_brush import BrushEdits
from ._widget_jobs import JobRunner, click_threads, gui_torch_threads, torch_threads
from ._widget_layers import PatchLayers, PendingClick
from .interaction.patch import ClickResult, Patch
from .interaction.session import AnnotationSession

#: How long a running click's mask may take before the click's point and message are shown
#: ahead of it (milliseconds): the product's target for a click's mask on screen (issue 14).
RUNNING_FEEDBACK_AFTER_MS = 150


def _same(a: PendingClick | None, b: PendingClick) -> bool:
    """Whether ``a`` is the click ``b``: the same patch (object), pixel and label."""
    return a is not None and a.patch is b.patch and (a.row, a.col, a.positive) == (b.row, b.col, b.positive)


class ClickQueue:
    """The running click and the queued ones.

    Args:
        session, jobs, layers, brush: the widget's parts.
        message: shows a line in the panel.
        show_mask: shows a patch's new mask, not its clicks (without selecting the mask layer);
            its second argument is ``within`` of ``PatchLayers.show_mask`` (``None``: anywhere).
        refresh: updates the panel's patch list and numbers.
        parent: owns the timers that show the clicks in a later event-loop turn (the widget).
    """

    def __init__(
        self,
        session: AnnotationSession,
        jobs: JobRunner,
        layers: PatchLayers,
        brush: BrushEdits,
        *,
        message: Callable[[str], None],
        show_mask: Callable[[Patch, tuple[slice, slice] | None], None],
        refresh: Callable[[], None],
        parent: QObject,
    ) -> None:
        self.session = session
        self.jobs = jobs
        self.layers = layers
        self.brush = brush
        self.queued: deque[PendingClick] = deque()
        self.running: PendingClick | None = None  # the click whose model runs now
        self.pressed: PendingClick | None = None  # a press whose model started before its release
        self._pressed_result: ClickResult | None = None  # its result, when done before the release
        self._pending_press: PendingClick | None = None  # a press whose model starts in the next turn
        self._press_timer = QTimer(parent)
        self._press_timer.setSingleShot(True)
        self._press_timer.setInterval(0)
        self._press_timer.timeout.connect(self._start_pressed)
        self._message = message
        self._show_mask = show_mask
        self._refresh = refresh
        self._running_text = ""  # the running click's message, shown with its point
        self._done_text: str | None = None  # a finished click's message, shown with its point
        self._points_timer = QTimer(parent)
        self._points_timer.setSingleShot(True)
        self._points_timer.setInterval(0)
        self._points_timer.timeout.connect(self._show_points)
        self._panel_timer = QTimer(parent)
        self._panel_timer.setSingleShot(True)
        self._panel_timer.setInterval(0)
        self._panel_timer.timeout.connect(self._show_done)
        self._running_timer = QTimer(parent)
        self._running_timer.setSingleShot(True)
        self._running_timer.setInterval(RUNNING_FEEDBACK_AFTER_MS)
        self._running_timer.timeout.connect(self._show_running)

    def pending(self) -> list[PendingClick]:
        """The running click, then the queued ones."""
        return [*([self.running] if self.running is not None else []), *self.queued]

    def press(self, patch: Patch, row: int, col: int, positive: bool) -> None:
        """A mouse press that becomes this click if released without a drag: its model starts
        in the event loop's next turn when no job runs (else nothing happens until the release;
        a release before then starts it as a click)."""
        if self.jobs.busy or self.queued or self.pressed is not None or self._pending_press is not None:
            return
        self._pending_press = PendingClick(patch, row, col, positive)
        self._press_timer.start()

    def _start_pressed(self) -> None:
        """The pressed click's model, in the event-loop turn after the press (after napari's
        repaint of the canvas for the press)."""
        pressed, self._pending_press = self._pending_press, None
        if pressed is None or self.jobs.busy:
            return
        self.brush.sync()
        self.pressed, self._pressed_result = pressed, None
        self.jobs.start(self._compute, pressed.patch, pressed.row, pressed.col, pressed.positive, gui_torch_threads(),
                        on_done=self._pressed_done)

    def cancel_press(self) -> None:
        """The press became a drag: its click is dropped (a running model's result is ignored)."""
        self._press_timer.stop()
        self._pending_press = None
        self.pressed, self._pressed_result = None, None

    def add(self, patch: Patch, row: int, col: int, positive: bool) -> None:
        """Run a click on ``patch`` now, or queue it while a job runs; the release of the
        `press` of the same click confirms that one instead."""
        kind = "Positive" if positive else "Negative"
        click = PendingClick(patch, row, col, positive)
        pressed, result = self.pressed, self._pressed_result
        self._press_timer.stop()
        self._pending_press = None
        self.pressed, self._pressed_result = None, None
        if _same(pressed, click):
            if result is None:  # its model still runs: the click is the running one
                self.running = pressed
                self._running_text = self._click_text(pressed)
                self._running_timer.start()
                return
            if not self.session.is_stale(result):
                self._clicked(result)
                return
        if self.jobs.busy:
            self.queued.append(click)
            self.show_points_soon()
            self._message(f"{kind} click at (row {row}, col {col}) queued ({len(self.queued)} waiting).")
            return
        self.brush.sync()
        self._start(click)

    def drop_last(self, patch: Patch) -> bool:
        """Remove the last queued click when it was made on ``patch``; whether there was one."""
        if not self.queued or self.queued[-1].patch is not patch:
            return False
        self.queued.pop()
        self.show_points_soon()
        return True

    def job_finished(self) -> None:
        """After any job: a click that failed (its result never came) loses its point."""
        self._running_timer.stop()
        if self.running is not None:
            self.running = None
            self.show_points_soon()

    def start_next(self) -> bool:
        """Run the next queued click; whether there was one."""
        if not self.queued:
            return False
        self._start(self.queued.popleft())
        return True

    def _click_text(self, click: PendingClick) -> str:
        kind = "Positive" if click.positive else "Negative"
        where = "" if click.patch is self.session.current else f" on {click.patch.name}"
        return f"{kind} click at (row {click.row}, col {click.col}){where}…"

    def _start(self, click: PendingClick) -> None:
        self._running_text = self._click_text(click)
        self.running = click
        self.jobs.start(self._compute, click.patch, click.row, click.col, click.positive, gui_torch_threads(),
                        on_done=self._clicked)
        self._running_timer.start()

    def _compute(self, patch: Patch, row: int, col: int, positive: bool, restore: int) -> ClickResult:
        """`AnnotationSession.compute_click` with `click_threads` torch threads (worker thread),
        then torch's count back to ``restore``, the GUI thread's."""
        with torch_threads(click_threads(), restore):
            return self.session.compute_click(patch, row, col, positive)

    def _pressed_done(self, result: ClickResult) -> None:
        """A pressed click's model is done: kept until the release while the button is held,
        applied when released meanwhile (computed again, next, if the mask changed since the
        press), dropped after a drag."""
        click = PendingClick(result.patch, result.click.row, result.click.col, result.click.is_positive)
        if _same(self.pressed, click):
            self._pressed_result = result
        elif _same(self.running, click):
            if self.session.is_stale(result):
                self.running = None
                self.queued.appendleft(click)  # runs once this job has finished
            else:
                self._clicked(result)

    def _clicked(self, result: ClickResult) -> None:
        painted = self.brush.painted_since(result.patch)
        self.running = None
        self.session.apply_click(result)
        self.brush.keep(result.patch, painted)
        if result.patch is self.session.current:
            # without strokes in between, the layer shows the mask the click started from
            self._show_mask(result.patch, result.step.changed_box if painted is None else None)
        waiting = f" ({len(self.queued)} waiting)" if self.queued else ""
        self._done_text = f"Click done in {result.latency_s * 1000:.0f} ms{waiting}."
        self.show_points_soon()

    def stop(self) -> None:
        """Drop the queued clicks and the pending updates (the viewer is closing)."""
        self.queued.clear()
        self.cancel_press()
        self._points_timer.stop()
        self._panel_timer.stop()
        self._running_timer.stop()

    def show_points_soon(self) -> None:
        """Show the current patch's clicks and pending clicks in the clicks layer in the event
        loop's next turn (requests made before then are served by one update)."""
        self._points_timer.start()

    def _show_points(self) -> None:
        """The clicks layer; after a click's mask, the panel's numbers and the click's message
        follow in the next turn (the panel's repaint and the canvas's are then two blocks)."""
        patch = self.session.current
        if patch is not None and self.layers.image_layer is not None:
            self.layers.show_clicks(patch, self.pending())
        if self._done_text is not None:
            self._panel_timer.start()

    def _show_done(self) -> None:
        """The panel's numbers and the finished click's message."""
        if self._done_text is not None:
            self._refresh()
            self._message(self._done_text)
            self._done_text = None

    def _show_running(self) -> None:
        """The running click's point and message (its mask is taking a while)."""
        if self.running is not None:
            self._message(self._running_text)
            self._show_points()
