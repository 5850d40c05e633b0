"""Still images in, as an image viewer shows them: EXIF orientation applied, high bit depths scaled, alpha flattened.

PIL's own `convert("RGB")` gets three common files wrong: a phone photo stored sideways with an EXIF orientation tag
stays sideways; a 16-bit greyscale PNG (mode "I;16") is clipped at 255, so almost every pixel turns white; and a
transparent cut-out loses its alpha, showing whatever colour the transparent pixels happen to hold (often black).
Here orientation is applied, 16-bit values are scaled to 8 bits (65535 -> 255), and transparency is composited
over `ALPHA_BACKGROUND`, white: the background of the character sheets and cut-outs references usually come from.
(48-bit RGB PNGs PIL already reduces to 8 bits by scaling.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps

__all__ = ["ALPHA_BACKGROUND", "read_image", "to_rgb"]

# The colour transparent pixels are composited over (RGB).
ALPHA_BACKGROUND = (255, 255, 255)
# PIL modes of 16-bit (and 32-bit integer) single-channel images, which `convert` clips rather than scales.
_WIDE_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# A 16-bit value v becomes round(v / 257): 65535 -> 255, and 257 * k -> k exactly.
_SIXTEEN_TO_EIGHT_BITS = 257.0


def to_rgb(image: PIL.Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND) -> PIL.Image.Image:
    """`image` as 8-bit RGB: 16-bit levels scaled, transparency composited over `background`."""
    if image.mode in _WIDE_INTEGER_MODES:
        levels = np.asarray(image, dtype=np.float64) / _SIXTEEN_TO_EIGHT_BITS
        image = PIL.Image.fromarray(np.clip(levels.round(), 0, 255).astype(np.uint8), mode="L")
    has_alpha = "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        flattened = PIL.Image.new("RGBA", rgba.size, (*background, 255))
        return PIL.Image.alpha_composite(flattened, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(
    path: str | os.PathLike, what: str = "image", background: tuple[int, int, int] = ALPHA_BACKGROUND
) -> PIL.Image.Image:
    """Read `path` as 8-bit RGB, upright (see the module docstring). An unreadable file is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with PIL.Image.open(path) as image:
            return to_rgb(PIL.ImageOps.exif_transpose(image), background)
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{what} {path} could not be read as an image ({error})") from None
