"""Checking and decoding untrusted inputs (storage.blobs.images).

The "image" cases of the per-field table (tests/support/validation.py) are refused naming the
field, the limit and the value by decode_inline, then open_image (the full decode the worker
runs). The same cases through the app are tests/api/test_submit_validation.py. inspect_image,
the API's header check, reads format and size without decoding a pixel, and agrees with
open_image on the hostile-image corpus (tests/support/hostile_images.py)."""

from __future__ import annotations

import zlib

import pytest
from PIL import ImageFile

from storage.blobs.images import ALLOWED_FORMATS, ImageInfo, decode_inline, inspect_image, open_image
from storage.errors import InvalidInput
from storage.settings import Settings
from tests.support.hostile_images import build_corpus, encode, raw_png, with_exif_orientation
from tests.support.images import scene
from tests.support.validation import Case, bad_body, ids, of_stage

IMAGE = of_stage("image")
MAX_PIXELS = Settings.model_fields["max_image_pixels"].default


@pytest.mark.parametrize("case", IMAGE, ids=ids(IMAGE))
def test_an_input_that_is_no_allowed_picture_is_refused_naming_the_field(case: Case) -> None:
    """What the API checks at submit: the header alone (the worker decodes the rest)."""
    value = bad_body(case)[case.field]
    assert isinstance(value, str)
    with pytest.raises(InvalidInput) as raised:
        inspect_image(case.field, decode_inline(case.field, value), max_pixels=MAX_PIXELS)
    error = raised.value
    assert error.field == case.field, error.message
    assert error.limit == case.limit, error.limit
    assert error.value == case.value, error.value
    assert error.message.startswith(case.field), error.message
    for word in case.words:
        assert word in error.message, f"{word!r} missing from {error.message!r}"


# The header check (inspect_image): what the API runs on every input instead of decoding it.

PHOTO = scene((64, 48))


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding a pixel fails (and inspect_image would report it as bad input)."""

    def refuse(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (encode(PHOTO, "PNG"), ImageInfo("PNG", 64, 48)),
        (encode(PHOTO, "JPEG", quality=90), ImageInfo("JPEG", 64, 48)),
        (encode(PHOTO, "WEBP", quality=80), ImageInfo("WEBP", 64, 48)),
        (encode(PHOTO.convert("RGBA"), "WEBP", lossless=True), ImageInfo("WEBP", 64, 48)),
        (with_exif_orientation(PHOTO, 6), ImageInfo("JPEG", 48, 64)),  # upright, as the worker decodes it
    ],
    ids=["png", "jpeg", "webp", "webp lossless rgba", "jpeg exif rotate 90"],
)
def test_the_header_gives_the_format_and_size_without_decoding(
    data: bytes, expected: ImageInfo, no_decoding: None
) -> None:
    assert inspect_image("image", data, max_pixels=MAX_PIXELS) == expected


@pytest.mark.parametrize(
    "data",
    [b"hello, world", b"", encode(PHOTO, "BMP"), encode(PHOTO, "GIF"), raw_png(0, 48)],
    ids=["text", "empty", "bmp", "gif", "png 0x48"],
)
def test_the_header_check_refuses_what_is_no_allowed_picture(data: bytes) -> None:
    with pytest.raises(InvalidInput) as raised:
        inspect_image("mask", data, max_pixels=MAX_PIXELS)
    assert raised.value.field == "mask"
    assert raised.value.limit == list(ALLOWED_FORMATS)
    assert raised.value.message == "mask: could not be decoded as PNG, JPEG, WEBP"


def test_the_header_check_refuses_more_pixels_than_the_limit_naming_both(no_decoding: None) -> None:
    with pytest.raises(InvalidInput) as raised:
        inspect_image("image", encode(PHOTO, "JPEG"), max_pixels=64 * 48 - 1)
    error = raised.value
    assert (error.field, error.limit, error.value) == ("image", 64 * 48 - 1, "64x48")
    assert error.message == "image: has 64x48 = 3072 pixels, more than the limit of 3071"


def test_a_header_past_pillows_bomb_limit_is_refused_with_the_limit() -> None:
    claims = raw_png(100_000, 100_000, idat=zlib.compress(b"\0" * 100))
    with pytest.raises(InvalidInput) as raised:
        inspect_image("image", claims, max_pixels=MAX_PIXELS)
    assert raised.value.limit == MAX_PIXELS
    assert raised.value.message == f"image: has more pixels than the limit of {MAX_PIXELS}"


def test_pixel_data_cut_after_the_header_passes_the_header_check() -> None:
    png = encode(PHOTO, "PNG")
    assert inspect_image("image", png[: len(png) // 2], max_pixels=MAX_PIXELS) == ImageInfo("PNG", 64, 48)
    with pytest.raises(InvalidInput, match="could not be decoded"):
        open_image("image", png[: len(png) // 2], max_pixels=MAX_PIXELS)  # the worker's decode


def test_the_header_check_agrees_with_decoding_on_the_hostile_corpus() -> None:
    """Each file is refused by both with the same message, or has the same size both ways, or (its
    pixels alone broken) passes the header check and is refused by the decoder."""
    for sample in build_corpus():
        try:
            header: ImageInfo | str = inspect_image("image", sample.data, max_pixels=MAX_PIXELS)
        except InvalidInput as exc:
            header = exc.message
        try:
            decoded: tuple[int, int] | str = open_image("image", sample.data, max_pixels=MAX_PIXELS).size
        except InvalidInput as exc:
            decoded = exc.message
        if isinstance(header, str):
            assert header == decoded, sample.name
        elif isinstance(decoded, str):
            assert sample.kind in ("truncated", "corrupt"), (sample.name, decoded)
        else:
            assert header.size == decoded, sample.name
