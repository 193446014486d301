"""Deterministic media for the demo bucket, the tests and the benchmarks.

Generated rather than checked in, so every EXIF orientation, MP4 brand, pixel format and moov position is one
call away and the repository stays free of binary blobs. Images carry a gradient with smoothed noise so JPEGs
compress to realistic sizes; the same arguments always give the same bytes for images (video encoders are
deterministic too for a fixed build).
"""

from __future__ import annotations

import io
import random
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

_SEED = 20240601
# EXIF tag numbers used below.
_ORIENTATION, _MAKE, _MODEL, _DATETIME, _SOFTWARE = 0x0112, 0x010F, 0x0110, 0x0132, 0x0131
_EXIF_IFD, _MAKER_NOTE, _DATETIME_ORIGINAL = 0x8769, 0x927C, 0x9003


def picture(width: int, height: int, *, seed: int = _SEED, mode: str = "RGB", grain: float = 0.08) -> Image.Image:
    """A gradient with low-frequency noise: compresses like a photo, not like a flat colour or pure noise.

    `grain` blends in per-pixel noise, which lossy codecs need to produce photo-like sizes; lossless formats
    (PNG) would balloon with it, so they use less.
    """
    rng = random.Random(seed)
    small_w, small_h = max(1, width // 16), max(1, height // 16)
    noise = Image.frombytes("RGB", (small_w, small_h), rng.randbytes(small_w * small_h * 3))
    noise = noise.resize((width, height), Image.Resampling.BICUBIC)
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(gradient, noise, 0.6)
    if grain:
        fine = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
        image = Image.blend(image, fine, grain)
    return image if mode == "RGB" else image.convert(mode)


def exif_block(orientation: int | None, *, extra_bytes: int = 0, camera: bool = True) -> Image.Exif:
    """EXIF like a camera writes it; `extra_bytes` adds a MakerNote, what makes real EXIF blocks big."""
    exif = Image.Exif()
    if orientation is not None:
        exif[_ORIENTATION] = orientation
    if camera:
        exif[_MAKE] = "bucket-sync"
        exif[_MODEL] = "Synthetic Camera 1"
        exif[_SOFTWARE] = "media.synth"
        exif[_DATETIME] = "2024:06:01 12:00:00"
        exif.get_ifd(_EXIF_IFD)[_DATETIME_ORIGINAL] = "2024:06:01 12:00:00"
    if extra_bytes:
        note = random.Random(extra_bytes).randbytes(extra_bytes)
        exif.get_ifd(_EXIF_IFD)[_MAKER_NOTE] = note
    return exif


def _save(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def jpeg(
    width: int = 640,
    height: int = 480,
    *,
    orientation: int | None = None,
    quality: int = 85,
    exif_extra_bytes: int = 0,
    mode: str = "RGB",
    seed: int = _SEED,
) -> bytes:
    """A baseline JPEG; `orientation=None` writes no EXIF (unless `exif_extra_bytes` asks for a block)."""
    params: dict[str, Any] = {"quality": quality}
    if orientation is not None or exif_extra_bytes:
        params["exif"] = exif_block(orientation, extra_bytes=exif_extra_bytes)
    return _save(picture(width, height, seed=seed, mode=mode), "JPEG", **params)


def png(
    width: int = 320,
    height: int = 240,
    *,
    orientation: int | None = None,
    mode: str = "RGB",
    seed: int = _SEED,
) -> bytes:
    params: dict[str, Any] = {}
    if orientation is not None:
        params["exif"] = exif_block(orientation, camera=False)
    return _save(picture(width, height, seed=seed, mode=mode, grain=0), "PNG", **params)


def webp(
    width: int = 320,
    height: int = 240,
    *,
    orientation: int | None = None,
    lossless: bool = False,
    alpha: bool = False,
    seed: int = _SEED,
) -> bytes:
    """Lossy (VP8), lossless (VP8L), or extended (VP8X) when EXIF or alpha needs it."""
    image = picture(width, height, seed=seed, mode="RGBA" if alpha else "RGB")
    params: dict[str, Any] = {"lossless": lossless, "quality": 80}
    if orientation is not None:
        params["exif"] = exif_block(orientation)
    return _save(image, "WEBP", **params)


def tiff(
    width: int = 320,
    height: int = 240,
    *,
    orientation: int | None = None,
    mode: str = "RGB",
    seed: int = _SEED,
) -> bytes:
    params: dict[str, Any] = {}
    if orientation is not None:
        params["tiffinfo"] = {_ORIENTATION: orientation}
    return _save(picture(width, height, seed=seed, mode=mode), "TIFF", **params)


def bmp(width: int = 320, height: int = 240, *, mode: str = "RGB", seed: int = _SEED) -> bytes:
    return _save(picture(width, height, seed=seed, mode=mode), "BMP")


def gif(width: int = 320, height: int = 240, *, seed: int = _SEED) -> bytes:
    return _save(picture(width, height, seed=seed).convert("P"), "GIF")


def _video(
    container: str,
    *,
    brand: str | None,
    pix_fmt: str,
    moov_last: bool,
    width: int,
    height: int,
    frames: int,
    fps: int,
    codec: str,
    rotation: int,
    seed: int,
) -> bytes:
    options: dict[str, str] = {}
    if brand is not None:
        options["brand"] = brand
    if not moov_last:
        options["movflags"] = "+faststart"  # the muxers write moov last unless told to move it to the front
    rng = random.Random(seed)
    base = picture(width, height, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"clip.{container}"
        with av.open(str(path), "w", format=container, options=options) as output:
            stream = output.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.time_base = Fraction(1, fps)
            if rotation:
                stream.set_display_rotation(-rotation)  # PyAV counts counter-clockwise; facts count clockwise
            # One thread, and no macroblock-tree or adaptive quantisation: with them x264 gave different bytes
            # for the same frames about once in a hundred runs; without them 500 runs were identical.
            x264 = {"preset": "veryfast", "crf": "28", "x264-params": "mbtree=0:aq-mode=0"}
            stream.options = x264 if codec == "libx264" else {}
            stream.codec_context.thread_count = 1
            for index in range(frames):
                shifted = base.rotate(index * 3, resample=Image.Resampling.BILINEAR)
                jitter = Image.frombytes("L", (8, 8), rng.randbytes(64)).resize((width, height)).convert("RGB")
                image = Image.blend(shifted, jitter, 0.1)
                frame = av.VideoFrame.from_image(image).reformat(format=pix_fmt)
                frame.pts = index
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))
        return path.read_bytes()


def mp4(
    *,
    brand: str | None = "mp42",
    pix_fmt: str = "yuv420p",
    moov_last: bool = False,
    width: int = 64,
    height: int = 48,
    frames: int = 10,
    fps: int = 10,
    codec: str = "libx264",
    rotation: int = 0,
    seed: int = _SEED,
) -> bytes:
    """An H.264 MP4; `brand` is the ftyp major brand (None keeps the muxer's default, "isom").

    `rotation`: clockwise display rotation written into the track matrix, as phones record portrait video.
    """
    return _video(
        "mp4",
        brand=brand,
        pix_fmt=pix_fmt,
        moov_last=moov_last,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        codec=codec,
        rotation=rotation,
        seed=seed,
    )


def mov(
    *,
    pix_fmt: str = "yuv420p",
    moov_last: bool = False,
    width: int = 64,
    height: int = 48,
    frames: int = 10,
    fps: int = 10,
    rotation: int = 0,
    seed: int = _SEED,
) -> bytes:
    """A QuickTime movie (ftyp major brand "qt  ") with H.264 video."""
    return _video(
        "mov",
        brand=None,
        pix_fmt=pix_fmt,
        moov_last=moov_last,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        codec="libx264",
        rotation=rotation,
        seed=seed,
    )


def truncated(data: bytes, keep: float) -> bytes:
    """The first `keep` fraction of `data`, as an interrupted upload leaves it."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be within [0, 1], got {keep}")
    return data[: int(len(data) * keep)]


def write_demo_dataset(root: Path) -> dict[str, str]:
    """Write the demo bucket under `root`; returns key -> what the file demonstrates.

    One file per finding the rule profiles can make, plus compliant files, kept under 2 MB. The empty folder
    `empty-folder/` stands in for a bucket's folder marker object.
    """
    camera = {"exif_extra_bytes": 6000, "quality": 80}
    files: dict[str, tuple[bytes, str]] = {
        "images/camera-upright.jpg": (
            jpeg(1024, 768, orientation=1, seed=1, **camera),
            "JPEG 1024x768, EXIF orientation 1: compliant",
        ),
        "images/camera-upside-down.jpg": (
            jpeg(1024, 768, orientation=3, seed=2, **camera),
            "JPEG 1024x768, EXIF orientation 3 (rotated 180°): strict rejects it",
        ),
        "images/phone-portrait.jpg": (
            jpeg(1024, 768, orientation=6, seed=3, **camera),
            "JPEG stored 1024x768, EXIF orientation 6 (rotated 90° CW): displays 768x1024; strict rejects it",
        ),
        "images/phone-portrait-ccw.jpg": (
            jpeg(1024, 768, orientation=8, seed=4, **camera),
            "JPEG stored 1024x768, EXIF orientation 8 (rotated 270° CW): displays 768x1024; strict rejects it",
        ),
        "images/no-exif.jpg": (jpeg(800, 600, seed=5), "JPEG 800x600 without EXIF: compliant"),
        "images/diagram.png": (png(320, 240, seed=6), "PNG 320x240: compliant"),
        "images/web/photo.webp": (
            webp(640, 480, orientation=1, seed=7),
            "WebP 640x480 with EXIF orientation 1",
        ),
        "images/broken/interrupted-upload.jpg": (
            truncated(jpeg(1024, 768, orientation=1, seed=8, **camera), 0.5),
            "JPEG cut in half: unreadable",
        ),
        "images/broken/notes.jpg": (
            b"hello world: this is a text file with a .jpg name\n",
            "text file named .jpg: not an image",
        ),
        "videos/compliant.mp4": (
            mp4(brand="mp42", pix_fmt="yuv420p", width=160, height=120, frames=20),
            "MP4 H.264, major brand mp42, yuv420p, moov first: compliant",
        ),
        "videos/isom-brand.mp4": (
            mp4(brand="isom", width=160, height=120, frames=20),
            "MP4 with major brand isom: strict wants mp42",
        ),
        "videos/yuv444.mp4": (
            mp4(pix_fmt="yuv444p", width=160, height=120, frames=20),
            "MP4 with pixel format yuv444p: strict wants yuv420p",
        ),
        "videos/moov-at-end.mp4": (
            mp4(moov_last=True, width=480, height=360, frames=40),
            "MP4 mp42/yuv420p with the moov box at the end: compliant, probed without a full download",
        ),
        "videos/broken/readme.mp4": (b"this is not a video\n", "text file named .mp4: not a video"),
    }
    root.mkdir(parents=True, exist_ok=True)
    for key, (data, _) in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty-folder").mkdir(exist_ok=True)
    described = {key: description for key, (_, description) in files.items()}
    described["empty-folder/"] = "empty folder: a folder marker, not media"
    return described
