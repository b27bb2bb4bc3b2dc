"""Image fixtures for the media tests: made with Pillow, or hand-built for hostile cases."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png(width: int = 1000, height: int = 500, color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 1200, height: int = 900, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


RED = (255, 0, 0)
BLUE = (0, 0, 255)


def animated_gif(
    width: int = 400, height: int = 400, colors: tuple[tuple[int, int, int], ...] = (RED, BLUE)
) -> bytes:
    """Frames of solid colours: the first frame is the first colour."""
    frames = [Image.new("RGB", (width, height), c) for c in colors]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG header claiming ``width x height`` pixels in a few dozen bytes.

    Decoding it would need width*height*3 bytes of memory (30 GB by default):
    the classic decompression bomb. Only the header may ever be read.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def rgb(img: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    pixel = img.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


def n_frames(img: Image.Image) -> int:
    return int(getattr(img, "n_frames", 1))
