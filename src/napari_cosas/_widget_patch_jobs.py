"""The dock widget's background jobs of a patch: its automatic mask and its click embedding, each in
a worker, started when the session says the patch needs them (`AnnotationSession.jobs_after`: after
it opens, is segmented or gets a starting mask). A patch opened while another job runs gets its
jobs after that job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._widget_brush import BrushEdits
from ._widget_jobs import JobRunner
from .interaction.patch import Patch
from .interaction.session import AnnotationSession, PatchEvent


class PatchJobs:
    """Segmenting and encoding patches in the background.

    Args:
        session, jobs, brush: the widget's parts.
        progress_bar: the panel's ``QProgressBar``.
        segment: the widget's segment action (it checks that no job runs and asks before
            dropping corrections), run when a patch needs its automatic mask.
        auto_segment: whether a new patch is segmented when it opens (the panel's check box).
        message: shows a line in the panel.
        show_mask: shows a patch's new mask.
    """

    def __init__(
        self,
        session: AnnotationSession,
        jobs: JobRunner,
        brush: BrushEdits,
        progress_bar: Any,
        *,
        segment: Callable[[], None],
        auto_segment: Callable[[], bool],
        message: Callable[[str], None],
        show_mask: Callable[[Patch], None],
    ) -> None:
        self.session = session
        self.jobs = jobs
        self.brush = brush
        self.progress_bar = progress_bar
        self._segment_action = segment
        self._auto_segment = auto_segment
        self._message = message
        self._show_mask = show_mask
        self._opened_while_busy: Patch | None = None  # a patch opened while a job ran: its jobs wait

    def opened(self, patch: Patch) -> None:
        """``patch`` was opened: its jobs now, or after the running job."""
        if self.jobs.busy:
            self._opened_while_busy = patch
        else:
            self.after(patch, "opened")

    def run_waiting(self) -> None:
        """The jobs of the patch opened while a job ran, if it is still the current one."""
        patch, self._opened_while_busy = self._opened_while_busy, None
        if patch is not None and patch is self.session.current:
            self.after(patch, "opened")

    def after(self, patch: Patch, event: PatchEvent) -> None:
        """Start the first background job the session says ``patch`` needs after ``event``
        (`AnnotationSession.jobs_after`); each job asks again when it is done."""
        jobs = self.session.jobs_after(patch, event, segment_new=self._auto_segment())
        if not jobs:
            return
        if jobs[0] == "segment":
            self._segment_action()
        else:
            self.encode(patch)

    def segment(self, patch: Patch) -> None:
        """Automatic mask in a worker, then the jobs the session asks for (the click embedding)."""
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._message("Segmenting…")
        self.jobs.start(self.session.compute_segmentation, patch, self.jobs.check_cancel,
                        on_done=lambda prob: self._segmented(patch, prob),
                        then=lambda: self.after(patch, "segmented"))

    def _segmented(self, patch: Patch, prob: np.ndarray) -> None:
        painted = self.brush.painted_since(patch)
        self.session.apply_segmentation(patch, prob)
        self.brush.keep(patch, painted)
        if patch is self.session.current:
            self._show_mask(patch)
        self._message("Automatic mask ready; encoding the image for clicks…")

    def encode(self, patch: Patch) -> None:
        """The click embedding of ``patch``, in the background (the bar shows work of unknown length)."""
        self.progress_bar.setRange(0, 0)
        self.jobs.start(self.session.prepare_embedding, patch, on_done=lambda _r: self._encoded())

    def _encoded(self) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self._message("Ready for clicks.")

    def on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
