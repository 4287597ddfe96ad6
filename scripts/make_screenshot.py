"""Save docs/screenshot.png: the widget on a sample patch after segmenting and a few clicks.

Needs the default weights (weights/segmenter_default.pt, weights/click_default.pt) and a display
with OpenGL; on a headless machine run it under a virtual screen:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshot.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_cosas.models.registry import WeightsError, fetch_weights

ROOT = Path(__file__).resolve().parents[1]
CLICKS = ((60, 80, True), (150, 170, False), (110, 40, True))  # (row, col, positive) on sample 1


def main() -> int:
    try:
        for name in ("cosas-default-segmenter", "cosas-default-click"):
            fetch_weights(name)
    except WeightsError as exc:
        sys.stderr.write(f"Cannot make the screenshot: the default weights are missing.\n{exc}\n")
        return 1

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_cosas._sample_data import sample_path
    from napari_cosas._widget import CosasWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    widget = CosasWidget(viewer)
    viewer.window.add_dock_widget(widget, name="COSAS annotator", area="right")
    widget.add_paths([sample_path(i) for i in range(3)])

    def wait() -> None:
        while widget.busy:
            QApplication.processEvents()

    wait()  # the first patch is segmented as it opens, then encoded for clicks
    for row, col, positive in CLICKS:
        widget.add_click(row, col, positive)
        wait()
    QApplication.processEvents()
    out = ROOT / "docs" / "screenshot.png"
    viewer.screenshot(str(out), canvas_only=False)
    sys.stderr.write(f"wrote {out}\n")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
