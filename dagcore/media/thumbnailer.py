"""Thumbnails with Pillow (spec: client-server API "Thumbnails").

https://spec.matrix.org/v1.19/client-server-api/#thumbnails

- ``scale``: fit within the requested box, keeping the aspect ratio (the client
  letterboxes); ``crop``: fill the box, then cut the centre to exactly the
  requested size and aspect ratio.
- "Servers MUST NOT upscale thumbnails under any circumstance": a source smaller
  than the request comes back at its own size (for ``crop``, cut to the
  requested aspect ratio).
- ``animated=true`` on an animated GIF/WebP/APNG gives an animated WebP ("Servers
  SHOULD prefer to return image/webp thumbnails when supporting animation"), or
  the original when it needs no resizing; otherwise the first frame, static.
- Output is PNG for sources with transparency or drawn graphics (PNG/GIF), JPEG
  for photos; EXIF orientation is applied and metadata (GPS...) is not copied.

Hostile input: only the JPEG, PNG, GIF and WebP decoders are ever used; the
pixel count is checked from the header before any pixel is decoded (config
``max_image_pixels``), so a decompression bomb costs nothing and gets
:class:`ImageTooLarge`; any decoder failure becomes :class:`NotAnImage`, never
a crash. Requested sizes above :data:`MAX_DIMENSION` are clamped (see there).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ParamSpec, TypeVar

if TYPE_CHECKING:
    from PIL import Image

# Pillow is imported by the first image handled, not with this module: a process that
# never makes a thumbnail does not carry its ~2 MB of modules (a Tribune serving /sync).

#: The only Pillow decoders we run on uploaded bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
#: Declared upload types we thumbnail (SVG is never rasterised: it is a document).
THUMBNAILABLE_CONTENT_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/apng", "image/gif", "image/webp"}
)
METHODS = ("scale", "crop")
#: Requests beyond this (either side) are scaled down proportionally to fit, rather
#: than refused: clients ask for "800 x devicePixelRatio", and an approximate
#: thumbnail beats a broken image. The spec lets the server choose ("The actual
#: thumbnail may be larger than the size specified" / may be approximate).
MAX_DIMENSION = 2000
#: Animated thumbnails: at most this many frames, and this many output pixels in all.
MAX_ANIMATED_FRAMES = 150
MAX_ANIMATED_PIXELS = 60_000_000
JPEG_QUALITY = 80
WEBP_QUALITY = 75


@dataclass(frozen=True)
class ThumbnailSpec:
    width: int
    height: int
    method: str


#: Spec-recommended sizes, pre-generated after an upload (``dagcore.tasks.media``).
STANDARD_THUMBNAILS = (
    ThumbnailSpec(32, 32, "crop"),
    ThumbnailSpec(96, 96, "crop"),
    ThumbnailSpec(320, 240, "scale"),
    ThumbnailSpec(640, 480, "scale"),
    ThumbnailSpec(800, 600, "scale"),
)


class ThumbnailError(Exception):
    pass


class NotAnImage(ThumbnailError):
    """Not a decodable image of an allowed format."""


class ImageTooLarge(ThumbnailError):
    """More pixels than ``max_image_pixels``."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    animated: bool


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int
    animated: bool = False


def clamp_dimensions(width: int, height: int) -> tuple[int, int]:
    """Scale a request so neither side exceeds :data:`MAX_DIMENSION` (aspect kept)."""
    largest = max(width, height)
    if largest <= MAX_DIMENSION:
        return width, height
    factor = MAX_DIMENSION / largest
    return max(1, round(width * factor)), max(1, round(height * factor))


def scaled_size(src_w: int, src_h: int, req_w: int, req_h: int) -> tuple[int, int]:
    """``scale``: the largest size within ``req_w x req_h`` with the source's aspect; no upscaling."""
    if src_w <= req_w and src_h <= req_h:
        return src_w, src_h
    if src_w * req_h > src_h * req_w:  # relatively wider than the box: width is the bound
        return req_w, max(1, round(src_h * req_w / src_w))
    return max(1, round(src_w * req_h / src_h)), req_h


def crop_geometry(
    src_w: int, src_h: int, req_w: int, req_h: int
) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    """``crop``: the centred source region with the requested aspect, and the output size.

    The output is exactly ``req_w x req_h`` when the region is at least that big;
    otherwise (small source) the region itself, unscaled.
    """
    if src_w * req_h > src_h * req_w:  # source relatively wider: keep full height
        box_w, box_h = src_h * req_w / req_h, float(src_h)
    else:
        box_w, box_h = float(src_w), src_w * req_h / req_w
    left, top = (src_w - box_w) / 2, (src_h - box_h) / 2
    box = (left, top, left + box_w, top + box_h)
    if box_w >= req_w and box_h >= req_h:
        return box, (req_w, req_h)
    out = (max(1, min(src_w, round(box_w))), max(1, min(src_h, round(box_h))))
    # No scaling at all: cut on whole pixels so the copy is exact, not resampled.
    ileft, itop = (src_w - out[0]) // 2, (src_h - out[1]) // 2
    return (ileft, itop, ileft + out[0], itop + out[1]), out


def output_size(src_w: int, src_h: int, req_w: int, req_h: int, method: str) -> tuple[int, int]:
    if method == "crop":
        return crop_geometry(src_w, src_h, req_w, req_h)[1]
    return scaled_size(src_w, src_h, req_w, req_h)


# --------------------------------------------------------------------------- decoding


Source = Path | str | BinaryIO


def _open(source: Source) -> Image.Image:
    from PIL import Image

    if isinstance(source, str | Path):
        return Image.open(source, formats=ALLOWED_FORMATS)
    source.seek(0)
    return Image.open(source, formats=ALLOWED_FORMATS)


def _check_pixels(img: Image.Image, max_pixels: int) -> None:
    if img.width <= 0 or img.height <= 0:
        raise NotAnImage("image has no pixels")
    if img.width * img.height > max_pixels:
        raise ImageTooLarge(f"image has {img.width}x{img.height} pixels, more than {max_pixels}")


def _is_animated(img: Image.Image) -> bool:
    # ``is_animated`` looks for a second frame only; ``n_frames`` would walk every frame of a GIF.
    return bool(getattr(img, "is_animated", False))


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn every decoder failure into a ThumbnailError (hostile input must never crash us)."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        from PIL import Image, UnidentifiedImageError

        try:
            return func(*args, **kwargs)
        except ThumbnailError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except UnidentifiedImageError as exc:
            raise NotAnImage("not an image of a supported format") from exc
        except Exception as exc:  # decoders raise OSError, SyntaxError, EOFError, struct.error...
            raise NotAnImage(f"could not decode the image: {type(exc).__name__}") from exc

    return wrapper


@_guarded
def probe(source: Source, *, max_pixels: int) -> ImageInfo:
    """Format and size from the header alone (no pixel is decoded)."""
    from PIL import ExifTags

    with _open(source) as img:
        _check_pixels(img, max_pixels)
        assert img.format is not None
        width, height = img.size
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        return ImageInfo(format=img.format, width=width, height=height, animated=_is_animated(img))


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _resize(img: Image.Image, req_w: int, req_h: int, method: str) -> Image.Image:
    from PIL import Image

    src_w, src_h = img.size
    if method == "crop":
        box, out = crop_geometry(src_w, src_h, req_w, req_h)
    else:
        out = scaled_size(src_w, src_h, req_w, req_h)
        box = (0, 0, src_w, src_h)
    if out == (src_w, src_h) and box == (0, 0, src_w, src_h):
        return img
    if out == (round(box[2] - box[0]), round(box[3] - box[1])) and all(float(b).is_integer() for b in box):
        return img.crop(tuple(int(b) for b in box))  # type: ignore[arg-type]
    return img.resize(out, Image.Resampling.LANCZOS, box=box)


def _draft_size(src_w: int, src_h: int, req_w: int, req_h: int, method: str) -> tuple[int, int]:
    """How big the decoded image must stay so the thumbnail is not upscaled from a JPEG draft."""
    if method == "crop":
        box, out = crop_geometry(src_w, src_h, req_w, req_h)
        factor = out[0] / (box[2] - box[0])
        return math.ceil(src_w * factor), math.ceil(src_h * factor)
    return scaled_size(src_w, src_h, req_w, req_h)


def _encode_static(img: Image.Image, *, photo: bool) -> Thumbnail:
    buf = io.BytesIO()
    if _has_alpha(img) or not photo:
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        img.save(buf, "PNG")
        content_type = "image/png"
    else:
        img = img.convert("RGB")
        img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
        content_type = "image/jpeg"
    return Thumbnail(data=buf.getvalue(), content_type=content_type, width=img.width, height=img.height)


_ORIGINAL_ANIMATED_TYPES = {"GIF": "image/gif", "WEBP": "image/webp", "PNG": "image/png"}


@_guarded
def render_thumbnail(
    source: Source, *, width: int, height: int, method: str, animated: bool, max_pixels: int
) -> Thumbnail:
    """A thumbnail of ``source`` for the requested bounds (see the module docstring)."""
    from PIL import ExifTags, ImageOps

    if method not in METHODS:
        raise ValueError(f"unknown thumbnail method {method!r}")
    width, height = clamp_dimensions(width, height)
    with _open(source) as img:
        _check_pixels(img, max_pixels)
        fmt = img.format or ""
        if animated and _is_animated(img):
            return _render_animated(img, source, width=width, height=height, method=method, fmt=fmt)
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        shown_w, shown_h = (img.height, img.width) if orientation in (5, 6, 7, 8) else img.size
        need_w, need_h = _draft_size(shown_w, shown_h, width, height, method)
        if orientation in (5, 6, 7, 8):
            need_w, need_h = need_h, need_w
        if fmt == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale when that is still big enough: far less memory and time.
            img.draft(None, (need_w, need_h))
        img.seek(0)  # the first frame of an animation
        frame = ImageOps.exif_transpose(img) if orientation != 1 else img
        if frame.mode not in ("RGB", "RGBA", "L", "LA"):
            frame = frame.convert("RGBA" if _has_alpha(frame) else "RGB")
        thumb = _resize(frame, width, height, method)
        return _encode_static(thumb, photo=fmt in ("JPEG", "WEBP"))


def _render_animated(
    img: Image.Image, source: Source, *, width: int, height: int, method: str, fmt: str
) -> Thumbnail:
    src_w, src_h = img.size
    out_w, out_h = output_size(src_w, src_h, width, height, method)
    if (out_w, out_h) == (src_w, src_h) and fmt in _ORIGINAL_ANIMATED_TYPES:
        # Small enough already: the original animation is the best thumbnail.
        if isinstance(source, str | Path):
            data = Path(source).read_bytes()
        else:
            source.seek(0)
            data = source.read()
        return Thumbnail(
            data=data, content_type=_ORIGINAL_ANIMATED_TYPES[fmt], width=src_w, height=src_h, animated=True
        )
    n_frames = min(int(getattr(img, "n_frames", 1)), MAX_ANIMATED_FRAMES)
    if n_frames * out_w * out_h > MAX_ANIMATED_PIXELS:
        n_frames = max(1, MAX_ANIMATED_PIXELS // (out_w * out_h))
    frames: list[Image.Image] = []
    durations: list[int] = []
    for index in range(n_frames):
        img.seek(index)
        frames.append(_resize(img.convert("RGBA"), width, height, method))
        durations.append(int(img.info.get("duration", 100)) or 100)
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        quality=WEBP_QUALITY,
    )
    return Thumbnail(
        data=buf.getvalue(),
        content_type="image/webp",
        width=frames[0].width,
        height=frames[0].height,
        animated=True,
    )
