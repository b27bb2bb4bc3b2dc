"""Pillow thumbnails: bounds of scale and crop, no upscaling, animation, hostile images."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dagcore.media import thumbnailer
from dagcore.media.thumbnailer import ImageTooLarge, NotAnImage, render_thumbnail
from tests.media import images

MAX_PIXELS = 32 * 1024 * 1024


def thumb(data: bytes, width: int, height: int, method: str, animated: bool = False) -> thumbnailer.Thumbnail:
    return render_thumbnail(
        io.BytesIO(data), width=width, height=height, method=method, animated=animated, max_pixels=MAX_PIXELS
    )


@pytest.mark.parametrize(
    ("src", "req", "expected"),
    [
        ((1000, 500), (320, 240), (320, 160)),  # wide source: width is the bound
        ((500, 1000), (320, 240), (120, 240)),  # tall source: height is the bound
        ((800, 600), (640, 480), (640, 480)),  # same aspect: exactly the box
    ],
)
def test_scale_fits_within_the_box_keeping_the_aspect_ratio(src, req, expected) -> None:
    t = thumb(images.png(src[0], src[1]), req[0], req[1], "scale")
    img = images.open_image(t.data)
    assert img.size == expected == (t.width, t.height)
    assert img.width <= req[0] and img.height <= req[1]


@pytest.mark.parametrize(
    ("src", "req"), [((1000, 500), (96, 96)), ((500, 1000), (32, 32)), ((1200, 900), (300, 100))]
)
def test_crop_gives_exactly_the_requested_size(src, req) -> None:
    t = thumb(images.jpeg(src[0], src[1]), req[0], req[1], "crop")
    assert images.open_image(t.data).size == req


def test_crop_cuts_the_centre_of_the_source() -> None:
    img = Image.new("RGB", (300, 100), (255, 0, 0))
    img.paste((0, 255, 0), (100, 0, 200, 100))  # green middle third
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = images.open_image(thumb(buf.getvalue(), 50, 50, "crop").data)
    assert images.rgb(out, (25, 25)) == (0, 255, 0)
    r, g, _ = images.rgb(out, (0, 0))  # resampling may bleed a little red in at the very edge
    assert g > 200 and r < 60


def test_a_small_source_is_never_upscaled_and_crop_keeps_the_aspect() -> None:
    small = images.png(100, 50)
    assert images.open_image(thumb(small, 800, 600, "scale").data).size == (100, 50)
    # Crop to 1:1 without enlarging: the centred 50x50 region.
    assert images.open_image(thumb(small, 96, 96, "crop").data).size == (50, 50)


def test_photos_become_jpeg_and_transparent_images_png() -> None:
    assert thumb(images.jpeg(), 96, 96, "crop").content_type == "image/jpeg"
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    t = thumb(buf.getvalue(), 96, 96, "scale")
    assert t.content_type == "image/png"
    assert images.open_image(t.data).mode == "RGBA"


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (400, 200), (10, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown: a portrait photo
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    out = images.open_image(thumb(buf.getvalue(), 100, 100, "scale").data)
    assert out.size == (50, 100)


def test_animated_gif_gives_its_first_frame_unless_animation_is_asked() -> None:
    gif = images.animated_gif(colors=(images.RED, images.BLUE))
    static = thumb(gif, 100, 100, "scale")
    assert static.content_type == "image/png" and not static.animated
    frame = images.open_image(static.data)
    assert not getattr(frame, "is_animated", False)
    r, _, b = images.rgb(frame, (50, 50))
    assert r > 200 and b < 50  # red: the first frame

    moving = thumb(gif, 100, 100, "scale", animated=True)
    assert moving.content_type == "image/webp" and moving.animated
    anim = Image.open(io.BytesIO(moving.data))
    assert images.n_frames(anim) == 2 and anim.size == (100, 100)


def test_animated_request_for_a_small_animation_returns_the_original() -> None:
    gif = images.animated_gif(64, 64)
    t = thumb(gif, 320, 240, "scale", animated=True)
    assert t.data == gif and t.content_type == "image/gif"


def test_animated_request_for_a_still_image_behaves_as_not_animated() -> None:
    t = thumb(images.jpeg(), 96, 96, "crop", animated=True)
    assert t.content_type == "image/jpeg" and not t.animated


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    # 100,000 x 100,000: past Pillow's own limit too.
    with pytest.raises(ImageTooLarge):
        thumb(images.png_bomb(), 96, 96, "crop")
    # 8,000 x 8,000 = 64 Mpx: under Pillow's limit, over ours (max_image_pixels).
    with pytest.raises(ImageTooLarge):
        thumb(images.png_bomb(8000, 8000), 96, 96, "crop")
    with pytest.raises(ImageTooLarge):
        thumbnailer.probe(io.BytesIO(images.png_bomb(8000, 8000)), max_pixels=MAX_PIXELS)
    # Control: an image under the limit is thumbnailed.
    assert thumb(images.png(2000, 2000), 96, 96, "crop").width == 96


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        images.png()[:100],  # truncated
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"BM" + b"\x00" * 60,  # BMP: a decoder we never run
        b"\x89PNG\r\n\x1a\n" + b"\xff" * 40,  # a PNG signature over garbage
    ],
)
def test_undecodable_or_unsupported_input_is_refused_never_a_crash(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        thumb(data, 96, 96, "crop")


def test_a_corrupt_body_after_a_valid_header_is_refused() -> None:
    good = images.jpeg(800, 600)
    broken = good[:300] + b"\x00" * 200 + good[500:2000]
    with pytest.raises((NotAnImage,)):
        thumb(broken, 96, 96, "crop")


def test_huge_requested_dimensions_are_clamped_proportionally() -> None:
    assert thumbnailer.clamp_dimensions(4000, 3000) == (2000, 1500)
    assert thumbnailer.clamp_dimensions(800, 600) == (800, 600)
    assert thumbnailer.clamp_dimensions(1_000_000_000, 1) == (2000, 1)
