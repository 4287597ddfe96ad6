"""Closing the viewer with the dock widget open: ask about unsaved corrections, then wait for the
running job, so that no worker thread outlives the viewer.

napari has no public close hook. Closing the window (its button, Ctrl+W, Quit) sends the main
window a Close event first; ``viewer.close()`` closes the canvas's QtViewer first, then the
window, past the point where closing could be cancelled. :class:`CloseGuard` filters both
objects' events (private attributes of napari's window, looked up when needed: holding them
would keep napari's QtViewer alive).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMessageBox, QWidget

if TYPE_CHECKING:
    import napari


class CloseGuard(QObject):
    """Watches the viewer's window for its Close event (a child of ``panel``, which parents the
    question asked).

    Args:
        panel: the dock widget.
        viewer: the napari viewer.
        unsaved: the names of the patches whose corrections are not exported.
        closing: whether the widget is already shutting down.
        shutdown: stops the widget's work and waits for the running job.
    """

    def __init__(
        self,
        panel: QWidget,
        viewer: napari.viewer.Viewer,
        *,
        unsaved: Callable[[], list[str]],
        closing: Callable[[], bool],
        shutdown: Callable[[], None],
    ) -> None:
        super().__init__(panel)
        self.panel = panel
        self.viewer = viewer
        self._unsaved = unsaved
        self._closing = closing
        self._shutdown = shutdown
        for watched in self._watched():
            if watched is not None:
                watched.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Before the viewer window closes: ask about unsaved corrections, then wait for the job."""
        if event.type() == QEvent.Type.Close and not self._closing():
            main_window, qt_viewer = self._watched()
            if obj is main_window and not self._confirm_close():
                event.ignore()
                return True
            if obj is main_window or obj is qt_viewer:
                self._shutdown()
        return super().eventFilter(obj, event)

    def _watched(self) -> tuple[QObject | None, QObject | None]:
        """napari's main window and its QtViewer (private attributes: napari has no close hook)."""
        window = self.viewer.window
        return getattr(window, "_qt_window", None), getattr(window, "_qt_viewer", None)

    def _confirm_close(self) -> bool:
        unsaved = self._unsaved()
        if not unsaved:
            return True
        names = ", ".join(unsaved[:5]) + (" …" if len(unsaved) > 5 else "")
        answer = QMessageBox.question(
            self.panel, "Unsaved corrections",
            f"{len(unsaved)} patch(es) have corrections that are not exported ({names}). Close anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes
