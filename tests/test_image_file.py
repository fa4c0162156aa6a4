"""cae.image_file: image modes and bit depths, and headers refused before decoding. Whole sources
(folders, archives, cache) are tests/test_sources.py."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cae.errors import CAEError
from cae.image_file import decode_image

RNG = np.random.default_rng(0)
# PNG's interlacing (Adam7): x0, y0, dx, dy of each of its seven passes, from the PNG specification.
PASSES = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour: int, body: bytes, interlace: bool = False) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(body)) + _chunk(b"IEND", b"")


def _filtered(kind: int, row: np.ndarray, above: np.ndarray, pixel_bytes: int) -> bytes:
    """One row stored with PNG filter ``kind``: each byte less its prediction from a (left), b (above)
    and c (above left)."""
    a = np.concatenate([np.zeros(pixel_bytes, np.int32), row[:-pixel_bytes]])
    c = np.concatenate([np.zeros(pixel_bytes, np.int32), above[:-pixel_bytes]])
    b = above
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    predicted = [0, a, b, (a + b) // 2, paeth][kind]
    return bytes([kind]) + ((row - predicted) & 0xFF).astype(np.uint8).tobytes()


def png16(samples: np.ndarray, colour: int, interlace: bool = False) -> bytes:
    """A 16-bit PNG written by hand (PIL writes 16-bit gray only), its rows stored with each of PNG's
    five filters in turn so that decoding must undo all of them."""
    height, width, channels = samples.shape
    pixel_bytes = 2 * channels
    body, row_number = b"", 0
    for x0, y0, dx, dy in PASSES if interlace else ((0, 0, 1, 1),):
        sub = samples[y0::dy, x0::dx]
        rows = sub.astype(">u2").reshape(sub.shape[0], -1).view(np.uint8).astype(np.int32)
        above = np.zeros(rows.shape[1], np.int32)
        for row in rows:
            body += _filtered(row_number % 5, row, above, pixel_bytes)
            above, row_number = row, row_number + 1
    return _png(width, height, 16, colour, body, interlace)


def _samples(channels: int) -> np.ndarray:
    samples = RNG.integers(0, 65536, size=(32, 32, channels)).astype(np.uint16)
    samples[0, :4, 0] = [0, 65535, 200, 65335]  # black, white and two that v // 256 gets wrong
    return samples


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize(("colour", "channels"), [(2, 3), (4, 2), (6, 4)])  # RGB, gray+alpha, RGBA
def test_16_bit_colour_pngs_scale_every_sample_to_round_v_over_257(colour, channels, interlace):
    samples = _samples(channels)
    data = png16(samples, colour, interlace)
    rgb16 = samples[..., :3] if channels >= 3 else np.repeat(samples[..., :1], 3, axis=-1)
    # The hand-written file is a real PNG: PIL reads it, though only as the high byte of each sample.
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb16 >> 8)
    pixels = decode_image(data, "x.png")
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 32, 3)
    np.testing.assert_array_equal(pixels, np.round(rgb16 / 257).astype(np.uint8))


def test_a_damaged_16_bit_colour_png_is_one_line_naming_it():
    data = png16(_samples(3), 2)
    damaged = data[:-60] + data[-12:]  # the image data cut short, the IEND chunk kept
    with pytest.raises(CAEError) as err:
        decode_image(damaged, "train/cat/0001.png")
    assert str(err.value) == "train/cat/0001.png: unreadable image (ValueError)"


def test_a_16_bit_gray_png_written_by_pil_is_gray_not_white():
    gray = _samples(1)[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "PNG")
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        assert im.mode == "I;16"  # the 16-bit mode PIL reads it in
    pixels = decode_image(buffer.getvalue(), "x.png")
    np.testing.assert_array_equal(pixels, np.repeat(np.round(gray / 257).astype(np.uint8)[..., None], 3, axis=-1))
    assert (pixels == 255).mean() < 0.01


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


RGBA = Image.fromarray(RNG.integers(0, 256, size=(32, 32, 4), dtype=np.uint8))  # alpha of every value
RGB = RGBA.convert("RGB")


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("L", "JPEG"),
     ("RGB", "JPEG"), ("RGB", "BMP"), ("RGBA", "WEBP")],
)  # fmt: skip
@pytest.mark.filterwarnings("error")  # a palette with transparent entries must not warn either
def test_8_bit_modes_become_their_rgb_colours_alpha_dropped(mode, fmt):
    data = _saved(RGBA.convert(mode), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == mode
        if mode == "P":
            assert isinstance(im.info["transparency"], bytes)  # alpha per palette entry
        expected = np.asarray(im.convert("RGBA"))[..., :3]
    np.testing.assert_array_equal(decode_image(data, "x.img"), expected)


def test_a_mode_without_a_conversion_is_refused_by_name():
    data = _saved(RGB.convert("CMYK"), "JPEG")
    with pytest.raises(CAEError) as err:
        decode_image(data, "imgs/train/cat/0001.jpg")
    assert str(err.value).startswith("imgs/train/cat/0001.jpg: a CMYK image, which is not read; expected 1-bit, ")


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [(4096, 4096, "expected a 32×32 image, got 4096×4096"),
     (100_000, 100_000, "expected a 32×32 image, its header claims more pixels than PIL decodes")],
)  # fmt: skip
def test_a_large_image_is_refused_from_its_header(width, height, message):
    # The pixel data is not even valid: decoding it would say "unreadable image", not the size.
    data = _png(width, height, 8, 2, b"not image data")
    with pytest.raises(CAEError) as err:
        decode_image(data, "big.png")
    assert str(err.value) == f"big.png: {message}"


def test_only_the_image_formats_named_are_tried():
    # An EPS header in a .png: PIL would open it as EPS and run Ghostscript for its pixels.
    data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n"
    with pytest.raises(CAEError) as err:
        decode_image(data, "x.png")
    assert str(err.value) == "x.png: unreadable image (UnidentifiedImageError)"
