"""Probe one object into MediaFacts: sniff the content, dispatch to a format prober, never raise.

The content decides the format, never the key's extension: a bucket is full of misnamed files, and the rules
layer is where a mismatch becomes a finding. Every failure, from a hostile header to a network error, ends up
as a short human reason in `facts.error`, because one bad object must never stop a sync of millions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from PIL import BmpImagePlugin, GifImagePlugin, Image, ImageFile, PngImagePlugin, TiffImagePlugin

from media import heif, mp4, webp
from media.errors import ProbeError
from media.exif import ORIENTATION_TAG, displayed_size, orientation_from_exif
from media.facts import MediaFacts
from media.jpeg import END_CHECK_BYTES, probe_jpeg
from media.ranges import RangeFile, RangeReader, RangeReadError

READ_FAILED = "read failed: "
"""Prefix of `facts.error` when the bytes could not be fetched: a transient condition, not a verdict on the
file.
"""

#: The head fingerprint (`facts.head_sha256`) covers this many first bytes, whatever the first read's size, so facts
#: from syncs made with another read size still pair moves by content.
FINGERPRINT_BYTES = 16 * 1024
#: Names that promise a format whose end check reads the file's last bytes: for them the tail read starts together
#: with the head read. A name only decides when the tail is fetched, never whether the file is checked.
_TAIL_CHECKED_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "jfif", "png"})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PILLOW_PLUGINS: dict[str, type[ImageFile.ImageFile]] = {
    "png": PngImagePlugin.PngImageFile,
    "tiff": TiffImagePlugin.TiffImageFile,
    "bmp": BmpImagePlugin.BmpImageFile,
    "gif": GifImagePlugin.GifImageFile,
}
_TRUNCATED = {
    "png": "truncated PNG: no image data (IDAT) before end of file",
    "tiff": "truncated TIFF: image directory runs past the end of the file",
    "bmp": "truncated BMP: header runs past the end of the file",
    "gif": "truncated GIF: no image descriptor before end of file",
}


#: A format's prober: (reader, facts to fill, whether to check the end of the file).
Prober = Callable[[RangeReader, MediaFacts, bool], None]


def sniff(head: bytes) -> str | None:
    """The container format named by the magic bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if webp.sniff(head):
        return "webp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if mp4.sniff(head):
        return "isobmff"
    return None


def probe(reader: RangeReader, *, extension: str | None = None, end_check: bool = True) -> MediaFacts:
    """Facts about the object behind `reader`; never raises.

    `end_check` (the rule profile's setting) reads the last bytes of a JPEG or PNG to catch a truncated upload;
    WebP, BMP and MP4 state their length in their headers and are checked for free either way. `extension` never
    changes the facts (the format comes from the content and the rules compare the two); it only says, for a name
    that promises JPEG or PNG, that the tail will be wanted, so its read is started together with the head read
    instead of one round trip after it.
    """
    facts = MediaFacts()
    try:
        if end_check and (extension or "").lower().lstrip(".") in _TAIL_CHECKED_EXTENSIONS:
            reader.start_tail_read(END_CHECK_BYTES)
        _probe(reader, facts, end_check)
    except RangeReadError as exc:
        facts.error = f"{READ_FAILED}{exc}"
    except ProbeError as exc:
        facts.error = str(exc)
    except Exception as exc:  # a parser bug or an exotic failure must still become a fact, not a crashed sync
        facts.error = f"could not parse {facts.format or 'object'}: {type(exc).__name__}: {exc}"[:300]
    facts.bytes_read = reader.bytes_read
    facts.requests = reader.requests
    return facts


def _probe(reader: RangeReader, facts: MediaFacts, end_check: bool) -> None:
    if reader.size == 0:
        raise ProbeError("empty object (0 bytes)")
    head = reader.head_bytes()
    facts.head_sha256 = hashlib.sha256(head[:FINGERPRINT_BYTES]).hexdigest()
    fmt = sniff(head)
    if fmt is None:
        raise ProbeError(f"not a recognised image or video (starts with {head[:8]!r})")
    _PROBERS[fmt](reader, facts, end_check)


def _probe_with_pillow(reader: RangeReader, facts: MediaFacts, fmt: str, end_check: bool) -> None:
    """Header-only parse through Pillow's lazy open: the plugins read metadata and stop before pixel data."""
    facts.kind, facts.format = "image", fmt
    if fmt == "bmp":
        _check_bmp_size(reader)
    fp = reader.file()
    try:
        # The plugin class is used directly instead of Image.open: the same lazy parse, without the global
        # decompression-bomb exception, so the declared size is kept when the size check below rejects it.
        im = _PILLOW_PLUGINS[fmt](fp)
    except ProbeError:
        raise
    except Image.DecompressionBombError as exc:
        # Raised by some plugins (GIF) while opening: report it in the same words as the size check below.
        if fmt == "gif":
            width, height = (int.from_bytes(reader.read_at(i, 2), "little") for i in (6, 8))
            facts.width, facts.height = width, height
            _check_pixel_limit(width, height)
        raise ProbeError("image declares a frame over the decompression-bomb limit") from exc
    except Exception as exc:
        raise _pillow_failure(fmt, fp, exc) from exc
    width, height = im.size
    if fmt == "tiff":
        # Pillow reports a TIFF's size already transposed by its orientation; the facts keep the stored size.
        width, height = im.tag_v2[256], im.tag_v2[257]  # type: ignore[attr-defined]  # ImageWidth, ImageLength
    orientation = _pillow_orientation(im, fmt)
    facts.width, facts.height, facts.mode, facts.orientation = width, height, im.mode, orientation
    facts.display_width, facts.display_height = displayed_size(width, height, orientation)
    _check_pixel_limit(width, height)
    if fmt == "png" and end_check:
        _check_png_end(reader)


def _pillow_failure(fmt: str, fp: RangeFile, exc: Exception) -> ProbeError:
    cause = exc.__cause__ if isinstance(exc, SyntaxError) and exc.__cause__ else exc
    if isinstance(cause, RangeReadError | ProbeError):
        return cause if isinstance(cause, ProbeError) else ProbeError(f"{READ_FAILED}{cause}")
    if fp.hit_eof:
        return ProbeError(_TRUNCATED[fmt])
    return ProbeError(f"malformed {fmt.upper()}: {exc}")


def _pillow_orientation(im: ImageFile.ImageFile, fmt: str) -> int | None:
    # Never im.getexif(): for PNG it loads the pixels when the EXIF chunk is not in the header.
    if fmt == "tiff":
        value = im.tag_v2.get(ORIENTATION_TAG)  # type: ignore[attr-defined]
        if isinstance(value, tuple):
            value = value[0] if value else None
        return value if isinstance(value, int) else None
    raw = im.info.get("exif")
    return orientation_from_exif(raw) if isinstance(raw, bytes) else None


def _check_pixel_limit(width: int, height: int) -> None:
    """Reject what Pillow would refuse to decode, so such files count as unreadable, as they are for CVAT."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > 2 * limit:
        raise ProbeError(
            f"image declares {width} x {height} pixels, over the decompression-bomb limit ({2 * limit} pixels)"
        )


def _check_png_end(reader: RangeReader) -> None:
    tail = reader.read_at(max(0, reader.size - END_CHECK_BYTES), END_CHECK_BYTES, exact=True)
    if _PNG_IEND not in tail:
        raise ProbeError("truncated PNG: no IEND chunk at the end of the file")


def _check_bmp_size(reader: RangeReader) -> None:
    declared = int.from_bytes(reader.read_at(2, 4), "little")
    if declared > reader.size:
        raise ProbeError(f"truncated BMP: header declares {declared} bytes, the object has {reader.size}")


def _probe_jpeg(reader: RangeReader, facts: MediaFacts, end_check: bool) -> None:
    probe_jpeg(reader, facts, end_check=end_check)
    if facts.width and facts.height:
        _check_pixel_limit(facts.width, facts.height)


def _probe_webp(reader: RangeReader, facts: MediaFacts, end_check: bool) -> None:
    webp.probe_webp(reader, facts)  # the RIFF header states the length: a truncation shows at no extra read
    if facts.width and facts.height:
        _check_pixel_limit(facts.width, facts.height)


def _probe_isobmff(reader: RangeReader, facts: MediaFacts, end_check: bool) -> None:
    mp4.probe_mp4(reader, facts)  # box sizes already show a truncation, at no extra read
    if facts.format in heif.FORMATS:  # the ftyp brands named a HEIF/AVIF still image: its facts are in its items
        heif.probe_heif(reader, facts)
        if facts.width and facts.height:
            _check_pixel_limit(facts.width, facts.height)


def _pillow_prober(fmt: str) -> Prober:
    return lambda reader, facts, end_check: _probe_with_pillow(reader, facts, fmt, end_check)


_PROBERS: dict[str, Prober] = {
    "jpeg": _probe_jpeg,
    "webp": _probe_webp,
    "isobmff": _probe_isobmff,
    **{fmt: _pillow_prober(fmt) for fmt in _PILLOW_PLUGINS},
}


#: What a deadline failure says (media/ranges.py, ProbeDeadlineExceeded): the one read failure that a file itself can
#: cause, by being slow to parse, rather than the network.
_DEADLINE_MARK = "(deadline "
TOO_SLOW = "too slow to probe: "


def settle_failure(error: str | None, previous: str | None) -> str | None:
    """The error to record for an object version, given what the last probe of the same version recorded.

    A read failure is normally transient and the next sync probes the object again. But a file that runs past the
    probe deadline twice in a row is the file's doing (a pathological header), and re-probing it on every sync would
    cost the deadline every time: the second time it is recorded as unreadable, with its reason, and carried forward
    like any other verdict until the object changes or a `--full` sync asks again.
    """
    if (
        error is not None
        and previous is not None
        and error.startswith(READ_FAILED)
        and _DEADLINE_MARK in error
        and previous.startswith(READ_FAILED)
        and _DEADLINE_MARK in previous
    ):
        return f"{TOO_SLOW}it ran past the probe deadline on two syncs in a row ({error.removeprefix(READ_FAILED)})"
    return error
