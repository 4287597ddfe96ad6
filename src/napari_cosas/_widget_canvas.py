"""The dock widget's canvas input: mouse clicks (positive / negative) and key bindings.

A press and release that moved at most the platform's drag distance (a few screen pixels) is a
click at the press position; a longer drag is left to napari (pan). The press is reported too
(so that the click's model can start before the release), and a press that becomes a drag is
called off. Clicks are reported in ``(row, col)`` image pixels of the shown image layer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import QApplication, QWidget

if TYPE_CHECKING:
    import napari

MouseCallback = Callable[[Any, Any], Generator[None, None, None]]


def click_label(button: int, modifiers: Any) -> bool | None:
    """Whether a mouse click is a positive (``True``) or negative (``False``) click, or ``None``
    when it is not the widget's (Shift, Alt, middle button...: napari's).

    Args:
        button: vispy's button number (1 left, 2 right, 3 middle).
        modifiers: vispy ``Key`` objects held (their ``name`` is ``"Control"``, ``"Meta"``, ...).
            Qt reports macOS's Cmd as Control, so Cmd+click is negative there too.
    """
    names = {getattr(m, "name", str(m)) for m in modifiers}
    if not names:
        return {1: True, 2: False}.get(button)
    if button == 1 and names in ({"Control"}, {"Meta"}):
        return False
    return None


def canvas_clicks(
    viewer: napari.viewer.Viewer,
    image_layer: Callable[[], Any],
    on_click: Callable[[int, int, bool], None],
    on_press: Callable[[int, int, bool], None] | None = None,
    on_drag: Callable[[], None] | None = None,
) -> MouseCallback:
    """A ``viewer.mouse_drag_callbacks`` entry that calls ``on_click(row, col, positive)`` for
    each click (`click_label`) on ``image_layer()``'s pixels; ignored while no image is shown or
    a layer tool other than pan/zoom (brush, eraser, ...) is active. ``on_press`` gets the same
    arguments at the press, ``on_drag()`` is called once the press has moved too far to be a
    click (instead of ``on_click``)."""

    def on_mouse_drag(_viewer: Any, event: Any) -> Generator[None, None, None]:
        active = viewer.layers.selection.active
        positive = click_label(event.button, event.modifiers)
        if image_layer() is None or positive is None or getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        row, col = (int(v) for v in np.round(image_layer().world_to_data(tuple(event.position))[-2:]))
        start = np.asarray(event.pos, dtype=float)
        slop = QApplication.startDragDistance()
        if on_press is not None:
            on_press(row, col, positive)
        yield
        while event.type == "mouse_move":
            if float(np.abs(np.asarray(event.pos, dtype=float) - start).max()) > slop:
                if on_drag is not None:
                    on_drag()
                return
            yield
        on_click(row, col, positive)

    return on_mouse_drag


def _key_handler(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_viewer_or_layer: Any) -> None:
        action()

    return handler


def bind_keys(viewer: napari.viewer.Viewer, panel: QWidget, actions: Mapping[str, Callable[[], Any]]) -> None:
    """Bind napari key names (``"Shift-N"``) to ``actions`` on the canvas (viewer keymap) and in
    ``panel`` (Qt shortcuts scoped to it, so that a list inside does not swallow them; text
    fields still get their letters)."""
    for key, action in actions.items():
        viewer.bind_key(key, _key_handler(action), overwrite=True)
        shortcut = QShortcut(QKeySequence(key.replace("-", "+")), panel)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(action)


def bind_layer_keys(layer: Any, actions: Mapping[str, Callable[[], Any]]) -> None:
    """Bind ``actions`` on one layer (instance keymap): napari asks the selected layer's keymap
    before the viewer's, and the Points class binds ``a`` and ``s``."""
    for key, action in actions.items():
        layer.bind_key(key, _key_handler(action), overwrite=True)
