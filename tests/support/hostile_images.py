"""A corpus of hostile and unusual image files, built in code at test time (no binary blobs).

Each entry says what the service must do with it: "accept" (decode, re-encode to
a clean PNG, run the job) or "reject" (a 400 naming the field). Accepted entries
may carry a `payload`: bytes hidden in the file that must not survive into the
stored, re-encoded input.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.support.images import scene

PAYLOAD = b"<script>alert('iq-polyglot')</script>"


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    expect: str  # "accept" or "reject"
    kind: str  # a short category for the report: truncated, bomb, polyglot, ...
    payload: bytes | None = None
    size: tuple[int, int] | None = None  # the stored input's size, when it is not the file's own


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def raw_png(
    width: int,
    height: int,
    *,
    depth: int = 8,
    color: int = 2,
    idat: bytes | None = None,
    before_idat: tuple[bytes, ...] = (),
) -> bytes:
    """A PNG written chunk by chunk, so that its header may lie about its data."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    if idat is None:
        row = b"\0" + bytes(max(width * channels * depth // 8, 1))
        idat = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + b"".join(before_idat)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header (SOF0/SOF2) of a JPEG to claim another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
    raise ValueError("no SOF marker")


def patch_webp_canvas(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the VP8X canvas size of an extended WebP (24-bit fields, stored minus one)."""
    assert data[12:16] == b"VP8X", data[12:16]
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return data[:24] + size + data[30:]


def with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def zip_with_payload() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("index.html", PAYLOAD)
    return buf.getvalue()


def animated(fmt: str) -> bytes:
    frames = [scene(), scene().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(7)
    shape = (size[1], size[0], len(mode)) if len(mode) > 1 else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def text_chunk_bomb() -> bytes:
    """A zTXt chunk that inflates to 64 MiB, before the image data."""
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(64 * 1024 * 1024), 9))
    return raw_png(8, 8, before_idat=(ztxt,))


def icc_bomb() -> bytes:
    iccp = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(64 * 1024 * 1024), 9))
    return raw_png(8, 8, before_idat=(iccp,))


def unusual_but_valid(photo: Image.Image) -> list[Sample]:
    grey16 = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21)
    return [
        Sample("png 1x1", encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "accept", "tiny"),
        Sample(
            "png palette with transparency",
            encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
            "accept",
            "mode",
        ),
        Sample("png 16-bit grey", encode(grey16, "PNG"), "accept", "mode"),
        Sample("png 16-bit RGB", raw_png(64, 48, depth=16, color=2), "accept", "mode"),
        Sample("png 1-bit", encode(photo.convert("1"), "PNG"), "accept", "mode"),
        Sample("png grey+alpha", encode(photo.convert("LA"), "PNG"), "accept", "mode"),
        Sample("png RGBA written by hand", raw_png(64, 48, depth=8, color=6), "accept", "mode"),
        Sample("jpeg CMYK", encode(photo.convert("CMYK"), "JPEG"), "accept", "mode"),
        Sample("jpeg greyscale", encode(photo.convert("L"), "JPEG"), "accept", "mode"),
        Sample("jpeg progressive", encode(photo, "JPEG", progressive=True), "accept", "mode"),
        Sample(
            "jpeg EXIF orientation 6 (rotate 90)",
            with_exif_orientation(photo, 6),
            "accept",
            "exif",
            size=(48, 64),
        ),
        Sample("webp lossless with alpha", encode(photo.convert("RGBA"), "WEBP", lossless=True), "accept", "mode"),
        Sample("webp animated", animated("WEBP"), "accept", "animated"),
        Sample("png animated (APNG)", animated("PNG"), "accept", "animated"),
    ]


def polyglots(png: bytes, jpeg: bytes, photo: Image.Image) -> list[Sample]:
    """Images that carry something else; accepted, and the something else must be gone."""
    comment = b"\xff\xfe" + struct.pack(">H", len(PAYLOAD) + 2) + PAYLOAD
    text = png_chunk(b"tEXt", b"Comment\0" + PAYLOAD)
    return [
        Sample("png + zip", png + zip_with_payload(), "accept", "polyglot", payload=PAYLOAD),
        Sample(
            "jpeg + trailing html/js",
            jpeg + b"<html>" + PAYLOAD + b"</html>",
            "accept",
            "polyglot",
            payload=PAYLOAD,
        ),
        Sample(
            "png with script in tEXt",
            raw_png(64, 48, before_idat=(text,)),
            "accept",
            "polyglot",
            payload=PAYLOAD,
        ),
        Sample(
            "jpeg with script in a COM segment",
            jpeg[:2] + comment + jpeg[2:],
            "accept",
            "polyglot",
            payload=PAYLOAD,
        ),
        Sample(
            "png with an ICC profile payload",
            encode(photo, "PNG", icc_profile=PAYLOAD * 4),
            "accept",
            "polyglot",
            payload=PAYLOAD,
        ),
    ]


def broken(png: bytes, jpeg: bytes, webp: bytes) -> list[Sample]:
    corrupt_zlib = raw_png(64, 48, idat=b"\x78\x9c" + bytes(range(200)))
    return [
        Sample("empty data", b"", "reject", "truncated"),
        Sample("png signature only", png[:8], "reject", "truncated"),
        Sample("png header without data", png[:33], "reject", "truncated"),
        Sample("png cut in half", png[: len(png) // 2], "reject", "truncated"),
        Sample("jpeg cut in half", jpeg[: len(jpeg) // 2], "reject", "truncated"),
        Sample("webp cut in half", webp[: len(webp) // 2], "reject", "truncated"),
        Sample("png with a corrupt zlib stream", corrupt_zlib, "reject", "corrupt"),
        Sample("random bytes", noise((64, 64)).tobytes(), "reject", "corrupt"),
        Sample("png 0x0", raw_png(0, 0), "reject", "corrupt"),
        Sample("png 0x48", raw_png(0, 48), "reject", "corrupt"),
    ]


def bombs(jpeg: bytes) -> list[Sample]:
    """A small file that claims, or really holds, a huge picture or a huge chunk."""
    return [
        Sample(
            "png claims 100000x100000",
            raw_png(100_000, 100_000, idat=zlib.compress(b"\0" * 100)),
            "reject",
            "bomb",
        ),
        Sample("png 8000x8000 of zeros (valid)", raw_png(8000, 8000, color=0), "reject", "bomb"),
        Sample("png 4097x4097 (just over the limit)", raw_png(4097, 4097, color=0), "reject", "bomb"),
        Sample("png zTXt chunk inflating to 64 MiB", text_chunk_bomb(), "reject", "bomb"),
        Sample("png iCCP chunk inflating to 64 MiB", icc_bomb(), "reject", "bomb"),
        Sample("jpeg claims 65000x65000", patch_jpeg_size(jpeg, 65000, 65000), "reject", "bomb"),
        Sample("jpeg claims 5000x5000", patch_jpeg_size(jpeg, 5000, 5000), "reject", "bomb"),
        Sample(
            "webp canvas claims 16384x16384",
            patch_webp_canvas(animated("WEBP"), 16384, 16384),
            "reject",
            "bomb",
        ),
    ]


def other_formats(photo: Image.Image) -> list[Sample]:
    """Whatever the data URI or the file name claims, only PNG, JPEG and WebP decoders run."""
    psd = b"8BPS\0\1" + bytes(6) + struct.pack(">HIIHH", 3, 48, 64, 8, 3) + bytes(64)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><script>' + PAYLOAD + b"</script></svg>"
    return [
        *(
            Sample(fmt.lower(), encode(photo, fmt), "reject", "disguised")
            for fmt in ("GIF", "BMP", "TIFF", "ICO", "PPM")
        ),
        Sample("psd header", psd, "reject", "disguised"),
        Sample("svg", svg, "reject", "disguised"),
        Sample("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\nshowpage\n", "reject", "disguised"),
        Sample("gif/js polyglot", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=1;" + PAYLOAD, "reject", "polyglot"),
        Sample("zip", zip_with_payload(), "reject", "disguised"),
        Sample("html", b"<html><body>" + PAYLOAD + b"</body></html>", "reject", "disguised"),
    ]


def build_corpus() -> list[Sample]:
    """Every sample, in a stable order."""
    photo = scene((64, 48))
    png, jpeg, webp = (
        encode(photo, "PNG"),
        encode(photo, "JPEG", quality=90),
        encode(photo, "WEBP", quality=80),
    )
    return [
        *unusual_but_valid(photo),
        *polyglots(png, jpeg, photo),
        *broken(png, jpeg, webp),
        *bombs(jpeg),
        *other_formats(photo),
    ]
