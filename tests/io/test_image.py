"""Still images read as a viewer shows them: 16-bit levels scaled, alpha over white, EXIF orientation applied."""

import struct
import zlib

import numpy as np
import PIL.Image
import pytest

from animatex_pp.io.image import ALPHA_BACKGROUND, read_image
from animatex_pp.io.preview import as_uint8_image


def write_16_bit_png(path, levels: np.ndarray) -> None:
    """A 16-bit PNG written chunk by chunk (PIL cannot write 48-bit RGB): colour type 0 grey, 2 RGB."""
    height, width = levels.shape[:2]
    color_type = 2 if levels.ndim == 3 else 0
    rows = b"".join(b"\x00" + levels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896], [51400, 65535, 1000]], np.uint16)
    write_16_bit_png(tmp_path / "grey16.png", levels)
    assert PIL.Image.open(tmp_path / "grey16.png").mode == "I;16"  # the mode PIL's convert("RGB") clips at 255
    image = np.asarray(read_image(tmp_path / "grey16.png"))
    np.testing.assert_array_equal(image[..., 0], [[0, 1, 128], [200, 255, 4]])
    assert (image == image[..., :1]).all()  # grey in all three channels


def test_48_bit_rgb_is_scaled(tmp_path):
    levels = np.zeros((2, 2, 3), np.uint16)
    levels[..., 0], levels[..., 1], levels[..., 2] = 65535, 32896, 2570
    write_16_bit_png(tmp_path / "rgb48.png", levels)
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "rgb48.png"))[0, 0], [255, 128, 10])


def test_uint16_arrays_and_16_bit_pil_images_are_scaled_by_the_converters():
    levels = np.full((2, 2, 3), 32896, np.uint16)
    assert as_uint8_image(levels)[0, 0, 0] == 128
    assert as_uint8_image(PIL.Image.fromarray(np.full((2, 2), 65535, np.uint16)))[0, 0, 0] == 255


def test_transparency_is_composited_over_white(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)  # transparent black ...
    pixels[0, 0] = (255, 0, 0, 255)  # ... but one opaque red pixel
    pixels[1, 1] = (0, 0, 255, 128)  # and one half-transparent blue one
    PIL.Image.fromarray(pixels, "RGBA").save(tmp_path / "cutout.png")
    image = np.asarray(read_image(tmp_path / "cutout.png"))
    assert ALPHA_BACKGROUND == (255, 255, 255)
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image[0, 1], [255, 255, 255])  # not the black the file stores under alpha 0
    np.testing.assert_allclose(image[1, 1], [127, 127, 255], atol=1)
    assert (as_uint8_image(PIL.Image.open(tmp_path / "cutout.png")) == image).all()  # the Python API agrees


def test_palette_transparency_is_composited_too(tmp_path):
    palette_image = PIL.Image.new("P", (2, 1), 0)
    palette_image.putpalette([0, 0, 0, 0, 255, 0])
    palette_image.putpixel((1, 0), 1)
    palette_image.save(tmp_path / "palette.png", transparency=0)
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "palette.png"))[0], [[255, 255, 255], [0, 255, 0]])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = 255  # white top-left of a landscape image
    image = PIL.Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones store portrait photos
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    upright = np.asarray(read_image(tmp_path / "phone.jpg"))
    assert upright.shape == (4, 2, 3)
    assert upright[0, 1].mean() > 200 and upright[0, 0].mean() < 60  # the white corner turned to the top-right


def test_unreadable_and_missing_images_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png could not be read as an image"):
        read_image(tmp_path / "broken.png", "--image")
    with pytest.raises(FileNotFoundError, match="--image not found"):
        read_image(tmp_path / "missing.png", "--image")
