"""Detection at sizes the backends work at: every frame is shown to the backend at most `MAX_SIDE` pixels long, and
when nobody is found, again at another scale and in crops; points found in a view are mapped back to the frame.

MediaPipe misses clearly visible people in large frames (a figure found in a 1024-pixel copy of a 2400-pixel image
is not found in the original) and small people in wide frames (found in a crop of the part they stand in). A view is
a crop box of the frame and the size it is resized to; a backend returns normalised coordinates of the image it
was given, so mapping back is `box origin + point * box size`, whatever the resize.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from animatex_pp.pose.skeleton import CONF_THRESHOLD

__all__ = ["MAX_SIDE", "MultiScaleBackend", "View", "views_of"]

MAX_SIDE = 1024  # MediaPipe finds people reliably up to here; DWPose resizes to its model inputs anyway
RETRY_SIDE = 512  # the second scale tried on the whole frame
CROP_WIDTH = 2 / 3  # crops: windows of this share of the width, full height, at the left, middle and right
CENTRE_CROP = 0.75  # and one centred crop of this share of both sides
MIN_VIEW_SIDE = 128  # retries smaller than this show the detectors too little to be worth a run
COORDINATE_PARTS = ("body", "feet", "hands", "face")


@dataclass(frozen=True)
class View:
    """A crop box (x0, y0, x1, y1) in frame pixels, resized to `size` (width, height) before detection."""

    box: tuple[int, int, int, int]
    size: tuple[int, int]

    def image(self, frame: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        crop = frame[y0:y1, x0:x1]
        if crop.shape[1::-1] == self.size:
            return np.ascontiguousarray(crop)
        return np.asarray(Image.fromarray(crop).resize(self.size, Image.Resampling.BILINEAR))

    def to_frame(self, found: dict[str, np.ndarray], width: int, height: int) -> dict[str, np.ndarray]:
        """Normalised coordinates of this view's image -> normalised coordinates of the whole frame."""
        x0, y0, x1, y1 = self.box
        origin = np.array([x0 / width, y0 / height], np.float32)
        extent = np.array([(x1 - x0) / width, (y1 - y0) / height], np.float32)
        return {
            name: origin + values * extent if name in COORDINATE_PARTS else values for name, values in found.items()
        }


def _fitted(box: tuple[int, int, int, int], max_side: int) -> View:
    """The view of `box` shrunk (never enlarged) to at most `max_side` pixels long."""
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    scale = min(1.0, max_side / max(box_width, box_height))
    return View(box, (max(1, round(box_width * scale)), max(1, round(box_height * scale))))


def views_of(width: int, height: int) -> list[View]:
    """The views of a `width` x `height` frame in the order they are tried: the whole frame first."""
    whole = (0, 0, width, height)
    views = [_fitted(whole, MAX_SIDE)]
    if max(width, height) > RETRY_SIDE:
        views.append(_fitted(whole, RETRY_SIDE))
    # Windows along the width only, at full height: a standing person cut at the waist is not found, and crops
    # of a tall figure's lower part make MediaPipe see a person in a dress or a tail.
    window = round(width * CROP_WIDTH)
    for start in (0, (width - window) // 2, width - window):
        views.append(_fitted((start, 0, start + window, height), MAX_SIDE))
    margin_x, margin_y = round(width * (1 - CENTRE_CROP) / 2), round(height * (1 - CENTRE_CROP) / 2)
    views.append(_fitted((margin_x, margin_y, width - margin_x, height - margin_y), MAX_SIDE))
    first = views[0]
    return [first] + [v for v in views[1:] if min(v.size) >= MIN_VIEW_SIDE and v != first]


def _found(result: dict[str, np.ndarray]) -> int:
    return int((result["body_conf"] >= CONF_THRESHOLD).sum())


class MultiScaleBackend:
    """A `PoseBackend` that runs `backend` on the views of each frame: the current view first, the others when it
    finds no body point, keeping the view that finds the most. The view that found someone stays current for the
    following frames (a video keeps one framing while the person is found)."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self._views: list[View] = []
        self._current = 0

    def reset(self) -> None:
        self.backend.reset()
        self._views, self._current = [], 0

    def close(self) -> None:
        self.backend.close()

    def __call__(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        height, width = frame.shape[:2]
        if not self._views or self._views[0].box != (0, 0, width, height):
            self._views, self._current = views_of(width, height), 0
        best, best_index = self.backend(self._views[self._current].image(frame)), self._current
        if not _found(best):
            for index, view in enumerate(self._views):
                if index == self._current:
                    continue
                result = self.backend(view.image(frame))
                if _found(result) > _found(best):
                    best, best_index = result, index
            self._current = best_index
        return self._views[best_index].to_frame(best, width, height)
