"""The interaction engine: one object's mask, clicks, click effect and undo / redo.

Every front end drives clicks through an :class:`Interaction`: the widget's session (one per
patch), ``evaluate`` and ``demo`` (one per simulated object). So the mask prompt a click is given,
the rule for the first click, the clicks the model is shown and what a click may change are the
same in the product and in the numbers published about it.

A click goes through a ``correctors.Corrector``, which turns the state before the click
(``correctors.ClickContext``) into the mask after it:

- ``correctors.ModelCorrector``: the click model (``refine.click_mask``: ``local`` or ``global``
  effect, the first-click rule, the focus refiner);
- ``references.OracleCorrector`` and ``references.WandCorrector``: the reference rows of the
  quality benchmark (a perfect local corrector, and a colour wand with no model).

Work is split for front ends with a worker thread: :meth:`Interaction.compute` reads the state
and calls the corrector (no state change); :meth:`Interaction.apply` records the result. Each
change (click, brush edit, reset) is undoable and redoable; the history stores only the bounding
box of the pixels a change flipped (bit-packed), so a long session on a large patch stays small,
and it keeps at most ``MAX_UNDO`` changes. The pixels set by hand (brush edits, an imported mask)
since the last reset are what a click's changes away from its own region must leave alone
(:meth:`Interaction.hand_set`, ``ClickContext.hand_set``).

Coordinates are ``(row, col)``; masks are ``(H, W)`` bool; probabilities ``(H, W)`` float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import numpy as np

from ..models.click_decoding import PROB_THRESHOLD
from .clicks import Click, Clicker
from .correctors import ClickContext, Corrector

__all__ = [
    "MAX_UNDO",
    "ClickOutsideError",
    "ClickRecord",
    "ClickStep",
    "Interaction",
    "StaleClickError",
]

#: Changes kept for undo per object; older ones can no longer be undone (their clicks are kept).
MAX_UNDO = 200

class ClickOutsideError(ValueError):
    """A click that does not lie on the image."""


class StaleClickError(RuntimeError):
    """A computed click applied after the mask changed under it."""


@dataclass(frozen=True)
class ClickRecord:
    """A click as recorded (sidecars, statistics): ``(row, col)``, label, wall time (ISO 8601,
    UTC), seconds the corrector took, and its effect."""

    row: int
    col: int
    positive: bool
    timestamp: str
    latency_s: float
    effect: str


@dataclass(frozen=True)
class ClickStep:
    """A computed click, not yet applied: the record, the ``(H, W)`` bool mask after it, the state
    it was computed on, and the pixels it flips in that state's mask (found in the thread that
    computed the click, not in the one applying it)."""

    click: Click
    record: ClickRecord
    mask: np.ndarray
    base: int
    diff: _MaskDiff | None

    @property
    def changed_box(self) -> tuple[slice, slice]:
        """The ``(rows, cols)`` bounding box of the pixels the click flips (empty if none)."""
        return (slice(0, 0), slice(0, 0)) if self.diff is None else (self.diff.rows, self.diff.cols)


@dataclass(frozen=True)
class _MaskDiff:
    """The pixels a change flipped: their bounding box and the bit-packed XOR inside it."""

    rows: slice
    cols: slice
    shape: tuple[int, int]
    bits: np.ndarray

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> _MaskDiff | None:
        flipped = before != after
        rows, cols = np.flatnonzero(flipped.any(axis=1)), np.flatnonzero(flipped.any(axis=0))
        if rows.size == 0:
            return None
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        inside = flipped[box]
        return cls(box[0], box[1], inside.shape, np.packbits(inside))

    def _inside(self) -> np.ndarray:
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.bits, count=n).reshape(self.shape).astype(bool)

    def flip(self, mask: np.ndarray) -> np.ndarray:
        """A copy of ``mask`` with the recorded pixels flipped (undoes and redoes the change)."""
        out = mask.copy()
        out[self.rows, self.cols] ^= self._inside()
        return out

    def mark(self, pixels: np.ndarray) -> None:
        """Set the recorded pixels in the ``(H, W)`` bool ``pixels``, in place."""
        pixels[self.rows, self.cols] |= self._inside()


@dataclass(frozen=True)
class _Change:
    """One undoable change. ``records`` / ``clicks``: the click added (``"click"``) or the clicks
    cleared (``"reset"``). ``edited``: whether the
    mask had been edited by hand before and after it. ``whole``: an edit that set every pixel by
    hand (an imported mask), not only those it flipped."""

    kind: Literal["click", "edit", "reset"]
    diff: _MaskDiff | None
    edited: tuple[bool, bool]
    clicks: tuple[Click, ...]
    records: tuple[ClickRecord, ...]
    id: int
    whole: bool = False

    def hand_set_after(self, pixels: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
        """The ``(H, W)`` bool pixels set by hand once this change follows ``pixels`` (``None``:
        none), updated in place where it can be; clicks leave them as they are."""
        if self.kind == "reset":
            return None
        if self.kind != "edit":
            return pixels
        if self.whole:
            return np.ones(shape, dtype=bool)
        if self.diff is None:
            return pixels
        pixels = np.zeros(shape, dtype=bool) if pixels is None else pixels
        self.diff.mark(pixels)
        return pixels


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Interaction:
    """One object being annotated: its mask, clicks and history.

    Args:
        shape: ``(H, W)`` of the image.
        auto_prob: ``(H, W)`` float32 automatic probabilities to start from (mask
            ``auto_prob > 0.49``), or ``None`` to start from ``mask``.
        mask: ``(H, W)`` starting mask when there is no ``auto_prob`` (default: empty).
    """

    def __init__(
        self, shape: tuple[int, int], *, auto_prob: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        if auto_prob is not None:
            auto_prob = np.asarray(auto_prob, dtype=np.float32)
            if auto_prob.shape != self.shape:
                raise ValueError(f"automatic probabilities are {auto_prob.shape}, the image is {self.shape} (rows, cols)")
            start = auto_prob > PROB_THRESHOLD
        elif mask is not None:
            start = np.asarray(mask) > 0
            if start.shape != self.shape:
                raise ValueError(f"starting mask is {start.shape}, the image is {self.shape} (rows, cols)")
        else:
            start = np.zeros(self.shape, dtype=bool)
        self.auto_prob = auto_prob
        self.start_mask = start
        self._mask = start.copy()
        self.clicker = Clicker()
        self.records: list[ClickRecord] = []
        self.edited = False
        self._undo: list[_Change] = []
        self._redo: list[_Change] = []
        self._next_id = 1
        self._base_id = 0  # the state before the oldest change still undoable
        self._base_hand_set: np.ndarray | None = None  # set by hand before the oldest undoable change

    # -- state ------------------------------------------------------------------------------

    @property
    def mask(self) -> np.ndarray:
        """The current ``(H, W)`` bool mask (do not modify it in place; use :meth:`edit`)."""
        return self._mask

    @property
    def state_id(self) -> int:
        """Identifies the current state: equal ids, equal mask and clicks (0: the start)."""
        return self._undo[-1].id if self._undo else self._base_id

    @property
    def untouched(self) -> bool:
        """No click and no edit since the start (or the last reset): the mask is the start mask."""
        return not self.clicker.clicks and not self.edited

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def contains(self, row: float, col: float) -> bool:
        return 0 <= row < self.shape[0] and 0 <= col < self.shape[1]

    def hand_set(self) -> np.ndarray | None:
        """The ``(H, W)`` bool pixels set by hand (brush edits, an imported mask) since the last
        reset, by the changes in effect now (an undone edit sets nothing); ``None`` if there are none
        (a session of clicks only allocates nothing here)."""
        pixels = None if self._base_hand_set is None else self._base_hand_set.copy()
        for change in self._undo:
            pixels = change.hand_set_after(pixels, self.shape)
        return pixels

    def context(self, click: Click) -> ClickContext:
        """The state before ``click``, as a corrector sees it."""
        return ClickContext(
            previous=self._mask, clicks=(*self.clicker.clicks, click),
            auto_prob=self.auto_prob, untouched=self.untouched, hand_set=self.hand_set(),
        )

    # -- clicks ------------------------------------------------------------------------------

    def compute(
        self, corrector: Corrector, click: Click, clock: Callable[[], float] = time.perf_counter
    ) -> ClickStep:
        """The click's result, without changing the state (safe in a worker thread).

        Raises:
            ClickOutsideError: the click is not on the image.
        """
        if not self.contains(click.row, click.col):
            raise ClickOutsideError(
                f"click at (row {click.row}, col {click.col}) is outside the {self.shape[0]}x{self.shape[1]} image"
            )
        base = self.state_id
        timestamp = _now_iso()
        start = clock()
        context = self.context(click)
        mask = corrector.correct(context)
        latency = clock() - start
        record = ClickRecord(click.row, click.col, click.is_positive, timestamp, latency, corrector.effect)
        mask = np.asarray(mask, dtype=bool)
        return ClickStep(click, record, mask, base, _MaskDiff.between(context.previous, mask))

    def is_current(self, step: ClickStep) -> bool:
        """Whether ``step`` was computed on the state as it is now (`apply` takes only such)."""
        return step.base == self.state_id

    def apply(self, step: ClickStep) -> None:
        """Record a computed click (undoable).

        Raises:
            StaleClickError: the state changed since ``step`` was computed.
        """
        if not self.is_current(step):
            raise StaleClickError("the mask changed while the click was computed; click again")
        self.clicker.add(step.click)
        self.records.append(step.record)
        self._commit("click", step.mask, self.edited, (step.click,), (step.record,), step.diff)

    def click(self, corrector: Corrector, click: Click) -> ClickStep:
        """:meth:`compute` then :meth:`apply`."""
        step = self.compute(corrector, click)
        self.apply(step)
        return step

    # -- edits, reset, undo, redo ---------------------------------------------------------------

    def edit(self, mask: np.ndarray, *, whole: bool = False) -> bool:
        """Take a mask edited by hand (a brush), or with ``whole`` a whole mask the user supplied
        (imported: every pixel then counts as set by hand); returns whether it changed anything."""
        mask = np.asarray(mask) > 0
        if mask.shape != self.shape:
            raise ValueError(f"edited mask is {mask.shape}, the image is {self.shape} (rows, cols)")
        if np.array_equal(mask, self._mask):
            return False
        self._commit("edit", mask, True, (), (), _MaskDiff.between(self._mask, mask), whole=whole)
        return True

    def reset(self) -> bool:
        """Back to the starting mask with no clicks (undoable); ``False`` when already there."""
        if self.untouched:
            return False
        clicks, records = self.clicker.clicks, tuple(self.records)
        self.clicker.reset()
        self.records.clear()
        start = self.start_mask.copy()
        self._commit("reset", start, False, clicks, records, _MaskDiff.between(self._mask, start))
        return True

    def undo(self) -> bool:
        """Undo the last click, edit or reset; ``False`` when there is nothing to undo."""
        if not self._undo:
            return False
        change = self._undo.pop()
        self._flip(change)
        self.edited = change.edited[0]
        if change.kind == "click":
            self.clicker.undo()
            self.records.pop()
        elif change.kind == "reset":
            for click in change.clicks:
                self.clicker.add(click)
            self.records.extend(change.records)
        self._redo.append(change)
        return True

    def redo(self) -> bool:
        """Redo the last undone change; ``False`` when there is none."""
        if not self._redo:
            return False
        change = self._redo.pop()
        self._flip(change)
        self.edited = change.edited[1]
        if change.kind == "click":
            self.clicker.add(change.clicks[0])
            self.records.append(change.records[0])
        elif change.kind == "reset":
            self.clicker.reset()
            self.records.clear()
        self._undo.append(change)
        return True

    def _flip(self, change: _Change) -> None:
        if change.diff is not None:
            self._mask = change.diff.flip(self._mask)

    def _commit(
        self,
        kind: Literal["click", "edit", "reset"],
        mask: np.ndarray,
        edited: bool,
        clicks: tuple[Click, ...],
        records: tuple[ClickRecord, ...],
        diff: _MaskDiff | None,
        *,
        whole: bool = False,
    ) -> None:
        """Make ``mask`` the state, ``diff`` (from the current mask to it) the undo step."""
        change = _Change(kind, diff, (self.edited, edited), clicks, records, self._next_id, whole)
        self._next_id += 1
        self._mask = mask
        self.edited = edited
        self._undo.append(change)
        if len(self._undo) > MAX_UNDO:
            oldest = self._undo.pop(0)
            self._base_hand_set = oldest.hand_set_after(self._base_hand_set, self.shape)
            self._base_id = oldest.id
        self._redo.clear()
