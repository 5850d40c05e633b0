"""Background motion: how the background of a video moves (direction and zoom), and whether that matches a caption.

Image coordinates throughout: x grows to the right, y grows downwards, both in pixels. Motion is the motion of the
*content* on screen: "left" means the background content moves toward smaller x (what a camera panning right shows),
"up" toward smaller y, "zoom_in" that it grows about the frame centre (scale > 1 per frame).

Translation comes from the masked normalised cross-correlation of consecutive frames (the whole background); zoom
from a least-squares fit of a similarity motion field to the shifts of overlapping tiles (a zoom by s about the
centre moves a tile centred at offset r by (s - 1) r). The character, given as a mask, is left out of every
comparison. ``phase_correlation`` is the classic unmasked estimator, for frames with nothing to leave out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from animatex_pp.io.frames import to_unit_float

LABELS = ("left", "right", "up", "down", "zoom_in", "zoom_out", "still", "unknown")  # "unknown": not measurable

# Width (pixels) of the Gaussian the correlation peak is smoothed to: a Gaussian peak is located exactly by a
# three-point parabola fit on its logarithm, where the raw peak (a sampled Dirichlet kernel) would bias a fit.
_PEAK_SIGMA = 1.0
_EPS = 1e-12


def _hann(height: int, width: int) -> np.ndarray:
    return np.outer(np.hanning(height), np.hanning(width))


def _subpixel_offset(left: float, centre: float, right: float) -> float:
    """Vertex of the parabola through three samples around a maximum, in [-0.5, 0.5] from the centre sample."""
    denominator = left - 2.0 * centre + right
    if denominator >= 0.0:  # flat or not a maximum: keep the integer peak
        return 0.0
    return float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5))


def _locate_peak(surface: np.ndarray) -> tuple[float, float]:
    """Sub-pixel (dy, dx) of the maximum of a circular correlation surface; indices past the middle are negative
    shifts (the FFT wraps around)."""
    height, width = surface.shape
    py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)
    oy = _subpixel_offset(surface[(py - 1) % height, px], surface[py, px], surface[(py + 1) % height, px])
    ox = _subpixel_offset(surface[py, (px - 1) % width], surface[py, px], surface[py, (px + 1) % width])
    dy = py - height if py >= height / 2 else py
    dx = px - width if px >= width / 2 else px
    return float(dy + oy), float(dx + ox)


def _fourier_shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``image`` moved by (dy, dx) pixels, as np.roll would for whole pixels (periodic)."""
    height, width = image.shape
    fy = np.fft.fftfreq(height)[:, None]  # (H, 1) cycles per pixel
    fx = np.fft.fftfreq(width)[None, :]  # (1, W)
    return np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * np.pi * (fy * dy + fx * dx))).real


def _phase_peak(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """One phase-correlation pass: the sub-pixel peak of the normalised cross-power spectrum of windowed frames."""
    height, width = a.shape
    total = window.sum()
    # Remove each frame's weighted mean so the window's own shape does not correlate with itself at zero shift.
    a = (a - (a * window).sum() / total) * window
    b = (b - (b * window).sum() / total) * window
    cross = np.conj(np.fft.fft2(a)) * np.fft.fft2(b)
    cross /= np.abs(cross) + _EPS
    fy = np.fft.fftfreq(height)[:, None]  # (H, 1) cycles per pixel
    fx = np.fft.fftfreq(width)[None, :]  # (1, W)
    cross *= np.exp(-2.0 * np.pi**2 * _PEAK_SIGMA**2 * (fy**2 + fx**2))
    surface = np.fft.ifft2(cross).real  # (H, W), a Gaussian bump at the shift
    return _locate_peak(np.log(np.maximum(surface, _EPS)))  # a parabola is exact on a Gaussian's logarithm


def phase_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Sub-pixel translation ``(dy, dx)`` that takes grayscale frame ``a`` to ``b``.

    Sign convention: if ``b`` is ``a`` shifted by ``(dy, dx)`` — ``b[y, x] = a[y - dy, x - dx]``, as
    ``np.roll(a, (dy, dx), axis=(0, 1))`` makes — this returns ``(dy, dx)``. Shifts are found modulo the frame size,
    in ``[-H/2, H/2) x [-W/2, W/2)``.

    Both frames are multiplied by a Hann window; the cross-power spectrum is normalised to unit magnitude and
    smoothed to a Gaussian peak, located to sub-pixel precision by a parabola fit on its logarithm. The window pulls
    the peak toward zero by a few percent of the shift, so a second pass measures the residual after moving ``b``
    back by the first estimate. For frames with regions to ignore, use ``masked_correlation``.

    Args:
        a, b: (H, W) float frames.
    """
    a, b = _check_pair(a, b)
    window = _hann(*a.shape)
    dy, dx = _phase_peak(a, b, window)
    residual_y, residual_x = _phase_peak(a, _fourier_shift(b, -dy, -dx), window)
    return dy + residual_y, dx + residual_x


def _masked_ncc(
    a: np.ndarray, b: np.ndarray, keep_a: np.ndarray | None, keep_b: np.ndarray | None, min_overlap: float
) -> np.ndarray:
    """(2H, 2W) masked normalised cross-correlation of ``a`` and ``b`` at every shift (see ``masked_correlation``);
    -1 where the kept overlap is below ``min_overlap`` of its largest."""
    a, b = _check_pair(a, b)
    height, width = a.shape
    keep_a = np.ones(a.shape) if keep_a is None else np.asarray(keep_a, dtype=np.float64)
    keep_b = np.ones(b.shape) if keep_b is None else np.asarray(keep_b, dtype=np.float64)
    if keep_a.shape != a.shape or keep_b.shape != b.shape:
        raise ValueError(
            f"masked_correlation: keep masks must be (H, W) = {a.shape}; got {keep_a.shape}, {keep_b.shape}"
        )

    def padded_fft(image: np.ndarray) -> np.ndarray:
        return np.fft.fft2(image, s=(2 * height, 2 * width))  # zero-padded so a shift never wraps

    def correlate(p_fft: np.ndarray, q_fft: np.ndarray) -> np.ndarray:
        return np.fft.ifft2(np.conj(p_fft) * q_fft).real  # (2H, 2W): sum_x p(x) q(x + d) at every shift d

    fa, fb = padded_fft(a * keep_a), padded_fft(b * keep_b)
    fka, fkb = padded_fft(keep_a), padded_fft(keep_b)
    overlap = correlate(fka, fkb)
    if overlap.max() < 1.0:
        raise ValueError("masked_correlation: no kept pixel in one of the frames; keep some background")
    count = np.maximum(overlap, 1.0)
    sum_a, sum_b = correlate(fa, fkb), correlate(fka, fb)
    covariance = correlate(fa, fb) - sum_a * sum_b / count
    var_a = correlate(padded_fft(a * a * keep_a), fkb) - sum_a**2 / count
    var_b = correlate(fka, padded_fft(b * b * keep_b)) - sum_b**2 / count
    ncc = covariance / np.sqrt(np.maximum(var_a, _EPS) * np.maximum(var_b, _EPS))
    ncc[overlap < min_overlap * overlap.max()] = -1.0  # too little overlap to trust
    return ncc


def masked_correlation(
    a: np.ndarray,
    b: np.ndarray,
    keep_a: np.ndarray | None = None,
    keep_b: np.ndarray | None = None,
    min_overlap: float = 0.5,
) -> tuple[float, float]:
    """Sub-pixel translation ``(dy, dx)`` from ``a`` to ``b`` (sign as ``phase_correlation``) counting only kept
    pixels: the masked normalised cross-correlation of Padfield, "Masked object registration in the Fourier domain"
    (IEEE TIP 2012), over zero-padded frames (no wrap-around), peak refined by a parabola fit.

    Phase correlation cannot simply weight a region out: whitening the spectrum amplifies the sharp edges of the
    hole, which are the same in both frames and pull the peak to zero (a 1 px/frame drift around a masked character
    measured as about 0.5). The normalised correlation compares, at every shift, only pixels kept in both frames.

    Args:
        a, b: (H, W) float frames.
        keep_a, keep_b: optional (H, W) bool, True where the pixel of that frame counts (default: all).
        min_overlap: shifts whose kept overlap is below this fraction of the largest overlap are not considered.
    """
    return _locate_peak(_masked_ncc(a, b, keep_a, keep_b, min_overlap))


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (H, W) grayscale frames of one shape; got {a.shape} and {b.shape}")
    return a, b


def _to_gray(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 in [0, 255] or float in [0, 1] -> (F, H, W) float64 luma in [0, 1]."""
    frames = to_unit_float(frames, "frames", "(F, H, W, 3)")
    if frames.shape[0] < 2:
        raise ValueError(f"background motion needs at least 2 frames; got {frames.shape[0]}")
    return frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # (F, H, W, 3) -> (F, H, W), BT.601 luma


@dataclass
class BackgroundMotion:
    """Per frame pair ``f -> f + 1`` background motion, each an (F - 1,) array: ``dx``, ``dy`` in pixels per frame;
    ``zoom`` the scale factor per frame about the frame centre (1 = none, > 1 = content grows); ``correlation`` the
    normalised correlation of the background at the measured shift (1 = the frames match exactly once moved)."""

    dx: np.ndarray
    dy: np.ndarray
    zoom: np.ndarray
    correlation: np.ndarray

    def classify(
        self, shift_threshold: float = 0.25, zoom_threshold: float = 0.004, min_correlation: float = 0.5
    ) -> str:
        """One of ``LABELS`` for the whole clip, from the median motion per frame over reliable frame pairs.

        A pair is reliable when its ``correlation`` reaches ``min_correlation``; with fewer than half the pairs
        reliable (noise, scene cuts: frames that do not match under any shift) the clip is ``"unknown"``, which no
        caption asks for. Translation counts when the larger of ``|median dx|``, ``|median dy|`` reaches
        ``shift_threshold`` pixels per frame; zoom when ``|median log zoom|`` reaches ``zoom_threshold`` (relative
        scale change per frame). When both count, the one further past its threshold wins; when neither does, the
        clip is ``"still"``.
        """
        reliable = self.correlation >= min_correlation
        if 2 * int(reliable.sum()) < reliable.size:
            return "unknown"
        # Medians: one bad pair (the character sweeping across an unmasked clip) must not decide the label.
        dx, dy = float(np.median(self.dx[reliable])), float(np.median(self.dy[reliable]))
        log_zoom = float(np.median(np.log(self.zoom[reliable])))
        shift_ratio = max(abs(dx), abs(dy)) / shift_threshold
        zoom_ratio = abs(log_zoom) / zoom_threshold
        if max(shift_ratio, zoom_ratio) < 1.0:
            return "still"
        if zoom_ratio > shift_ratio:
            return "zoom_in" if log_zoom > 0 else "zoom_out"
        if abs(dx) >= abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"


def _tile_grid(height: int, width: int, grid: int) -> list[tuple[slice, slice, float, float]]:
    """Overlapping tiles of half the frame on a ``grid`` x ``grid`` lattice: (rows, cols, centre y, centre x),
    centres relative to the frame centre."""
    tile_h, tile_w = height // 2, width // 2
    tiles = []
    for top in np.linspace(0, height - tile_h, grid).round().astype(int):
        for left in np.linspace(0, width - tile_w, grid).round().astype(int):
            centre_y = top + (tile_h - 1) / 2 - (height - 1) / 2
            centre_x = left + (tile_w - 1) / 2 - (width - 1) / 2
            tiles.append((slice(top, top + tile_h), slice(left, left + tile_w), centre_y, centre_x))
    return tiles


def _fit_zoom(shifts: list[tuple[float, float, float, float, float]]) -> float:
    """Scale s of the motion field (dy, dx) = (ty, tx) + (s - 1) (y, x) that best fits tile shifts, by weighted
    least squares over rows (y, x, dy, dx, weight)."""
    y, x, dy, dx, w = (np.array(column) for column in zip(*shifts, strict=True))
    # Unknowns (ty, tx, k = s - 1); each tile gives one row for dy and one for dx.
    design = np.concatenate(
        [np.stack([np.ones_like(y), np.zeros_like(y), y], 1), np.stack([np.zeros_like(x), np.ones_like(x), x], 1)]
    )  # (2 * tiles, 3)
    target = np.concatenate([dy, dx])  # (2 * tiles,)
    root_w = np.sqrt(np.concatenate([w, w]))[:, None]  # (2 * tiles, 1)
    solution, *_ = np.linalg.lstsq(design * root_w, target * root_w[:, 0], rcond=None)
    return 1.0 + float(solution[2])


def estimate_background_motion(
    frames: np.ndarray, mask: np.ndarray | None = None, grid: int = 3, min_background: float = 0.5
) -> BackgroundMotion:
    """Measure how the background moves between consecutive frames.

    Args:
        frames: (F, H, W, 3) RGB, uint8 in [0, 255] or float in [0, 1].
        mask: optional (F, H, W) bool, True on the character; each frame's character pixels are left out of the
            comparison (``masked_correlation``).
        grid: tiles per side for the zoom fit (half-frame tiles, overlapping).
        min_background: tiles with a smaller background fraction are left out of the zoom fit.

    Returns:
        A ``BackgroundMotion`` with (F - 1,) ``dx``, ``dy`` (pixels per frame), ``zoom`` (scale per frame) and
        ``correlation`` (how well the moved background matches).
    """
    gray = _to_gray(frames)  # (F, H, W)
    num_frames, height, width = gray.shape
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != gray.shape or mask.dtype != np.bool_:
            raise ValueError(f"mask must be (F, H, W) = {gray.shape} bool, True on the character; got {mask.shape}")
    keep = np.ones(gray.shape, dtype=bool) if mask is None else ~mask  # (F, H, W), True on the background
    tiles = _tile_grid(height, width, grid)
    dx, dy, zoom, correlation = [], [], [], []
    for f in range(num_frames - 1):
        ncc = _masked_ncc(gray[f], gray[f + 1], keep[f], keep[f + 1], min_overlap=0.5)
        shift_y, shift_x = _locate_peak(ncc)
        dy.append(shift_y)
        dx.append(shift_x)
        correlation.append(float(ncc.max()))
        shifts = []
        for rows, cols, centre_y, centre_x in tiles:
            background = float(min(keep[f][rows, cols].mean(), keep[f + 1][rows, cols].mean()))
            if background >= min_background:
                tile_dy, tile_dx = masked_correlation(
                    gray[f][rows, cols], gray[f + 1][rows, cols], keep[f][rows, cols], keep[f + 1][rows, cols]
                )
                shifts.append((centre_y, centre_x, tile_dy, tile_dx, background))
        # A fit needs tiles on both sides of the centre in some direction; with fewer than 3 assume no zoom.
        zoom.append(_fit_zoom(shifts) if len(shifts) >= 3 else 1.0)
    return BackgroundMotion(dx=np.array(dx), dy=np.array(dy), zoom=np.array(zoom), correlation=np.array(correlation))


# Caption vocabulary. The subject decides the sign of a translation: "the background drifts left" is content moving
# left; "the camera pans left" is content moving right. Zoom reads the same for both ("zooms in" = content grows).
_DIRECTIONS = {
    "left": "left",
    "leftward": "left",
    "leftwards": "left",
    "right": "right",
    "rightward": "right",
    "rightwards": "right",
    "up": "up",
    "upward": "up",
    "upwards": "up",
    "down": "down",
    "downward": "down",
    "downwards": "down",
}
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
# Stems with any ending: "pans", "panning", "slides", "sliding"; a direction word must follow, which keeps it strict.
_MOVE_VERB = r"(?:drift|mov|pan|slid|scroll|shift|travel|glid|flow)\w*"
_TRANSLATION = re.compile(
    rf"\b{_MOVE_VERB}\s+(?:\w+ly\s+)?(?:(?:to|toward|towards)\s+(?:the\s+)?)?(?P<direction>{'|'.join(_DIRECTIONS)})\b"
)
_ZOOM = re.compile(r"\bzoom(?:s|ing|ed)?\s+(?P<direction>in|out)\b")
_STILL = re.compile(
    r"\b(?:is|stays|remains|keeps|holds)\s+(?:still|static|stationary|motionless)\b"
    r"|\b(?:does not|doesn't|do not|don't)\s+move\b|\bstatic\s+(?:background|camera)\b|\bno\s+camera\s+motion\b"
)


def expected_motion_label(caption: str | None) -> str | None:
    """The background-motion label a caption asks for, or None when it states no (or contradictory) motion.

    Recognised (case-insensitive): a motion verb (drift, move, pan, slide, scroll, shift, travel, glide, flow) followed
    by a direction ("left", "to the left", "towards the right", "upward", "down", ...); "zooms in"/"zooms out";
    "is still"/"stays static"/"does not move"/"static background". A translation whose subject is the camera is
    turned into the content's motion ("the camera pans right" -> "left").
    """
    if not caption:
        return None
    text = caption.lower()
    found = set()
    for match in _TRANSLATION.finditer(text):
        direction = _DIRECTIONS[match["direction"]]
        clause = re.split(r"[.,;:!?]", text[: match.start()])[-1]  # the words before the verb, in its clause
        found.add(_OPPOSITE[direction] if re.search(r"\bcamera\b", clause) else direction)
    found.update(f"zoom_{match['direction']}" for match in _ZOOM.finditer(text))
    if _STILL.search(text):
        found.add("still")
    return found.pop() if len(found) == 1 else None


def background_motion_accuracy(predicted_labels: list[str], expected_labels: list[str | None]) -> float | None:
    """Fraction of clips whose measured label equals the expected one, over clips with an expected label.

    Clips whose expected label is None (caption states no motion we can check) are not evaluable and are left out;
    returns None when no clip is evaluable.
    """
    if len(predicted_labels) != len(expected_labels):
        raise ValueError(
            f"background_motion_accuracy needs one predicted label per expected label; got "
            f"{len(predicted_labels)} and {len(expected_labels)}"
        )
    unknown = sorted({label for label in [*predicted_labels, *expected_labels] if label not in (*LABELS, None)})
    if unknown:
        raise ValueError(f"unknown motion labels {unknown}; use one of {LABELS} (or None for not evaluable)")
    pairs = [(p, e) for p, e in zip(predicted_labels, expected_labels, strict=True) if e is not None]
    if not pairs:
        return None
    return sum(p == e for p, e in pairs) / len(pairs)
