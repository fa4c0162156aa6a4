"""One image file of a class-folder tree to 32×32×3 uint8 pixels, refused from its header (size, mode)
before its pixels are decoded."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from cae.errors import CAEError

IMAGE_SHAPE = (32, 32, 3)
# PIL's readers for the image suffixes read. Without the list Image.open tries every format PIL knows,
# some of which run external programs when their pixels are loaded (EPS runs Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")

EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX")  # alpha is dropped, as convert("RGB") does
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # gray; "I" is how older PIL reads a 16-bit PNG
ALLOWED_MODES = "1-bit, 8-bit or 16-bit gray, palette, RGB or RGBA (8 or 16 bits)"


def decode_image(data: bytes, name: str) -> np.ndarray:
    """The (32, 32, 3) uint8 pixels of one image file; a 16-bit sample v becomes round(v / 257).

    Size and mode come from the header (``Image.open`` reads no pixels), so an image of the wrong
    size or of an unknown mode is refused before its pixels are decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            if im.size != IMAGE_SHAPE[:2]:
                raise CAEError(f"{name}: expected a 32×32 image, got {im.size[0]}×{im.size[1]}")
            if im.format == "PNG" and _png_depth_and_colour(data) in ((16, 2), (16, 4), (16, 6)):
                return _rgb8_of_16_bit(_png16_samples(data))
            if im.mode in EIGHT_BIT_MODES:
                # Through RGBA: a palette with transparent entries converts to RGB only with a warning.
                colours = im.convert("RGBA") if im.mode == "P" else im
                return np.asarray(colours.convert("RGB"))
            if im.mode in SIXTEEN_BIT_MODES:
                gray = np.asarray(im)
                if gray.min() < 0 or gray.max() > 0xFFFF:
                    raise CAEError(
                        f"{name}: {im.mode} pixels from {gray.min()} to {gray.max()}, expected 16-bit values 0-65535"
                    )
                return _rgb8_of_16_bit(gray[..., None])
            raise CAEError(f"{name}: a {im.mode} image, which is not read; expected {ALLOWED_MODES}")
    except Image.DecompressionBombError:
        # Raised by Image.open from the header alone, before the size check above can run.
        raise CAEError(f"{name}: expected a 32×32 image, its header claims more pixels than PIL decodes") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as err:
        raise CAEError(f"{name}: unreadable image ({type(err).__name__})") from None


def _rgb8_of_16_bit(samples: np.ndarray) -> np.ndarray:
    """(h, w, 1-4 channels) 16-bit samples as (h, w, 3) uint8: gray repeated, alpha dropped, and each
    value v scaled to round(v / 257), so 0 and 65535 stay black and white (v / 257 is never x.5)."""
    v = samples.astype(np.uint32)
    rgb = v[..., :3] if v.shape[-1] >= 3 else np.repeat(v[..., :1], 3, axis=-1)
    return ((2 * rgb + 257) // 514).astype(np.uint8)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_depth_and_colour(data: bytes) -> tuple[int, int]:
    """Bit depth and colour type from the IHDR chunk, which a PNG must start with."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 29:
        raise ValueError("no PNG header")
    return data[24], data[25]


def _png16_samples(data: bytes) -> np.ndarray:
    """The (h, w, channels) uint16 samples of a 16-bit colour PNG, every bit kept.

    PIL reads 16-bit gray exactly (mode I;16) but keeps only the high byte of 16-bit colour (v // 256,
    one level off round(v / 257) for about a quarter of the values); TensorFlow's libpng reader keeps
    all 16 bits. Such files are rare, so TensorFlow is imported only when one is met.
    """
    import tensorflow as tf

    try:
        return tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as err:
        raise ValueError(err.message) from None
