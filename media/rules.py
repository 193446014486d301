"""Rule profiles: which facts make an object unfit for a target tool, and the command that fixes each finding.

A rule is a small pure function of one object's facts (and the profile, for the formats it accepts), so the
same verdicts come out of a sync, a test and a notebook. An object that cannot be read gets only the
"readable" finding: judging the brand or orientation of a file nobody can decode would be noise.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from media.cvat import ADDRESSABLE_SQL, is_cvat_image_extension, split_name, unaddressable_reason
from media.facts import MediaFacts

WARN = "WARN"


@dataclass(frozen=True)
class Violation:
    rule: str
    severity: str
    message: str
    remediation: str


@dataclass(frozen=True)
class Profile:
    """A named list of rules plus what its target tool accepts.

    `manifest_displayed_size`: the manifest records the size a viewer shows (EXIF orientation applied), for
    tools that honour the orientation tag; otherwise the stored size.

    `end_check`: probing reads the last bytes of every JPEG and PNG to catch truncated uploads (a JPEG without its
    end-of-image marker, a PNG without IEND), which then fail `readable`. It costs a second request per image (sent
    together with the first, so no second round trip); a tool that decodes what it can does without it.
    """

    name: str
    rules: tuple[str, ...]
    image_formats: frozenset[str]
    video_formats: frozenset[str]
    manifest_displayed_size: bool
    description: str = ""
    end_check: bool = True


Rule = Callable[[MediaFacts, str, Profile], list[Violation]]

# What an extension promises, for the mismatch check. MP4 and QuickTime share one container family and tools
# open either under both names, so a .mov holding an "isom" file is not called misnamed.
_EXTENSION_FORMATS: dict[str, str] = {
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jpe": "jpeg",
    "jfif": "jpeg",
    "png": "png",
    "webp": "webp",
    "tif": "tiff",
    "tiff": "tiff",
    "bmp": "bmp",
    "dib": "bmp",
    "gif": "gif",
    "heic": "heic",
    "heif": "heic",
    "avif": "avif",
    "mp4": "isobmff",
    "m4v": "isobmff",
    "mov": "isobmff",
    "qt": "isobmff",
}
_FAMILY = {"mp4": "isobmff", "mov": "isobmff"}
_HEIF_FORMATS = frozenset({"heic", "avif"})
_CANONICAL_EXTENSION = {"jpeg": "jpg", "tiff": "tif", "heic": "heic", "avif": "avif"}

_ORIENTATION_NAMES = {
    2: "mirrored horizontally",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "mirrored horizontally and rotated 270° CW",
    6: "rotated 90° CW",
    7: "mirrored horizontally and rotated 90° CW",
    8: "rotated 270° CW",
}


def _file_name(key: str) -> str:
    return key.rpartition("/")[2] or key


def _beside(key: str, name: str) -> str:
    """`name` in the folder of `key`, spelled from the key itself: the fix commands name objects by their full key
    (folders and prefix included), so a person can paste them into a shell over a copy of the bucket. The key is cut
    as text, not normalised as a path, so `a//b.jpg` keeps its empty folder."""
    return key[: len(key) - len(_file_name(key))] + name


def _ffmpeg_fix(key: str) -> str:
    fixed = _beside(key, f"{PurePosixPath(_file_name(key)).stem}-fixed.mp4")
    return f"ffmpeg -i {shlex.quote(key)} -c:v libx264 -pix_fmt yuv420p -brand mp42 {shlex.quote(fixed)}"


def _violation(rule: str, message: str, remediation: str) -> list[Violation]:
    return [Violation(rule=rule, severity=WARN, message=message, remediation=remediation)]


def readable(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    if facts.error is None:
        return []
    return _violation(
        "readable",
        f"cannot be read: {facts.error}",
        "re-export or re-upload the file; it cannot be decoded as it is",
    )


def supported_format(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    if facts.error is not None:
        return []
    name = _file_name(key)
    quoted = shlex.quote(key)
    if facts.kind == "other" or facts.format is None:
        return _violation(
            "supported_format",
            f"not an image or video that {profile.name} accepts",
            f"remove {quoted} from the bucket or exclude it from the connection",
        )
    accepted = profile.image_formats if facts.kind == "image" else profile.video_formats
    problems: list[str] = []
    fixes: list[str] = []
    if facts.format not in accepted:
        problems.append(
            f"{facts.kind} format {facts.format} is not accepted by {profile.name} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )
        if facts.format in _HEIF_FORMATS:
            # libheif's converter applies the irot/imir transforms while decoding, so the JPEG it writes is upright
            # (it resets the copied EXIF orientation to 1); `mogrify` would need ImageMagick built with libheif.
            fixes.append(f"heif-convert {quoted} {shlex.quote(_beside(key, PurePosixPath(name).stem + '.jpg'))}")
        elif facts.kind == "image":
            fixes.append(f"mogrify -format jpg {quoted}")
        else:
            fixes.append(_ffmpeg_fix(key))
    suffix = PurePosixPath(name).suffix.lower().lstrip(".")
    promised = _EXTENSION_FORMATS.get(suffix)
    if promised is not None and promised != _FAMILY.get(facts.format, facts.format):
        problems.append(f"the name ends in .{suffix} but the content is {facts.format}")
        if facts.format in accepted:
            right = _CANONICAL_EXTENSION.get(facts.format, facts.format)
            renamed = _beside(key, f"{PurePosixPath(name).stem}.{right}")
            fixes.append(f"mv {quoted} {shlex.quote(renamed)}")
    if not problems:
        return []
    return _violation("supported_format", "; ".join(problems), "; then ".join(fixes) or "re-export the file")


def exif_orientation(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    if facts.error is not None or facts.kind != "image" or facts.orientation in (None, 0, 1):
        return []
    if facts.format in _HEIF_FORMATS and facts.format not in profile.image_formats:
        # A HEIF/AVIF orientation is its irot/imir (media/heif.py), which the conversion that supported_format asks
        # for applies; mogrify/exiftool advice aimed at an EXIF tag would only be noise beside it.
        return []
    value = facts.orientation
    meaning = _ORIENTATION_NAMES.get(value, "not a valid value")
    quoted = shlex.quote(key)
    return _violation(
        "exif_orientation",
        f"EXIF orientation {value} ({meaning}); Vi rejects images whose orientation is not 1",
        f"mogrify -auto-orient {quoted} (rotates the pixels so the image looks the same and resets the tag); "
        f"or exiftool -Orientation= -overwrite_original {quoted} "
        "(drops the tag: the image then shows as stored)",
    )


def mp4_brand(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    if facts.error is not None or facts.kind != "video" or facts.format != "mp4" or facts.major_brand == "mp42":
        return []
    return _violation(
        "mp4_brand",
        f"MP4 major brand is {facts.major_brand!r}; Vi requires 'mp42'",
        _ffmpeg_fix(key),
    )


def mp4_pixel_format(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    if facts.error is not None or facts.kind != "video" or facts.pix_fmt == "yuv420p":
        return []
    if facts.pix_fmt is None:
        message = f"pixel format of codec {facts.codec!r} could not be determined; Vi requires yuv420p"
    else:
        message = f"pixel format is {facts.pix_fmt}; Vi requires yuv420p"
    return _violation("mp4_pixel_format", message, _ffmpeg_fix(key))


def manifest_name(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    """Keys CVAT cannot address through a manifest stay out of it, with the reason and a rename."""
    if facts.error is not None or facts.kind not in ("image", "video"):
        return []
    reason = unaddressable_reason(key)
    if reason is None:
        return []
    return _violation(
        "manifest_name",
        f"left out of the manifest: {reason}",
        f"rename the object to a plain path such as {shlex.quote(_plain_key(key))}",
    )


def extension_mismatch(facts: MediaFacts, key: str, profile: Profile) -> list[Violation]:
    """An image whose name CVAT would not file as an image (`photo.xyz`, `scan`) stays out of the image manifest.

    CVAT decides what a file is from its name alone, so such an image would be refused or mistaken for something
    else however sound its bytes. A name promising another known format (`photo.png` holding a JPEG, `clip.mp4`
    holding a JPEG) is `supported_format`'s finding, with its own rename; this rule takes the names that promise
    nothing CVAT knows.
    """
    if facts.error is not None or facts.kind != "image" or facts.format is None:
        return []
    base, extension = split_name(key)
    if is_cvat_image_extension(extension):
        return []
    promised = _EXTENSION_FORMATS.get(extension.lower().lstrip("."))
    if promised is not None and promised != _FAMILY.get(facts.format, facts.format):
        return []
    right = "." + _CANONICAL_EXTENSION.get(facts.format, facts.format)
    renamed = base + right
    named = f"its name ends in {extension}" if extension else "its name has no extension"
    moves = [
        f"mv {shlex.quote(key)} {shlex.quote(renamed)}",
        f"aws s3 mv {shlex.quote('s3://BUCKET/' + key)} {shlex.quote('s3://BUCKET/' + renamed)}",
        f"gcloud storage mv {shlex.quote('gs://BUCKET/' + key)} {shlex.quote('gs://BUCKET/' + renamed)}",
    ]
    return _violation(
        "extension_mismatch",
        f"left out of the manifest: the content is a {facts.format} image but {named}, which CVAT does not treat "
        "as an image",
        f"rename it to end in {right}: {moves[0]} (in a bucket: {moves[1]}, or {moves[2]})",
    )


def name_collision(key: str, name: str, taken_by: str, rank: int) -> Violation:
    """The finding for the `rank`-th key (2, 3, ...) whose manifest name the first key in key order already holds."""
    suffix = key[len(name) :]
    renamed = f"{name}-{rank}{suffix}"
    return Violation(
        rule="manifest_name",
        severity=WARN,
        message=(
            f"left out of the manifest: its name {name!r} is already used by {taken_by!r} "
            "(CVAT identifies an image by its name without the extension)"
        ),
        remediation=f"rename it so its name differs, e.g. mv {shlex.quote(key)} {shlex.quote(renamed)}",
    )


def _plain_key(key: str) -> str:
    segments = [s for s in key.split("/") if s not in ("", ".", "..")]
    plain = "/".join("".join(c if ord(c) >= 0x20 and ord(c) != 0x7F else "_" for c in s) for s in segments)
    return plain or "renamed"


RULES: dict[str, Rule] = {
    "readable": readable,
    "supported_format": supported_format,
    "exif_orientation": exif_orientation,
    "mp4_brand": mp4_brand,
    "mp4_pixel_format": mp4_pixel_format,
    "manifest_name": manifest_name,
    "extension_mismatch": extension_mismatch,
}
ALL_RULES: tuple[str, ...] = tuple(RULES)

#: Bumped whenever a rule's verdict or message changes: verdicts judged under another version are judged again, so a
#: carried-forward object never keeps a verdict the current rules would not give.
RULES_VERSION = "2026-11-30-full-key-fixes"


def verdict_travels_sql(old: str, new: str) -> str:
    """SQL, over key columns `old` and `new`, true when an object moved from `old` to `new` keeps its verdict.

    Every rule decides from the key's file name only (`_file_name`), except `manifest_name`, which asks whether CVAT
    can address the key at all. So when both keys are addressable (their file name is then their last segment) and
    that name is the same, `judge` gives the moved object the same findings (rule, severity, message), and a sync can
    copy a clean verdict as a set operation instead of judging again (assets/probes.py). A fix names the full key, so
    an object with findings is judged again under its new key. A rule that reads more of the key must change this too;
    tests/unit/test_carry_forward.py holds every rule to it.
    """
    same_name = f"regexp_extract({old}, '[^/]*$') = regexp_extract({new}, '[^/]*$')"
    return f"({same_name} AND {ADDRESSABLE_SQL.format(key=old)} AND {ADDRESSABLE_SQL.format(key=new)})"


def judged_by(profile: Profile) -> str:
    """What a verdict was judged under: the profile and the rules' version."""
    return f"{profile.name}@{RULES_VERSION}"


PROFILES: dict[str, Profile] = {
    "strict": Profile(
        name="strict",
        rules=ALL_RULES,
        image_formats=frozenset({"jpeg", "png", "webp", "bmp", "tiff"}),
        video_formats=frozenset({"mp4"}),
        manifest_displayed_size=False,
        description="Datature Vi's asset requirements: orientation 1, MP4 brand mp42 with yuv420p",
        end_check=True,
    ),
    # CVAT decodes images with stock Pillow and nothing else: its server requirements (cvat/requirements/base.in)
    # pin Pillow>=12.3 and no pillow-heif, nothing registers a HEIF opener, and its maintainers say it supports the
    # image formats of stock Pillow, with no plans for HEIC (cvat-ai/cvat#8579). So HEIC stays out, with its size in
    # the facts. AVIF is in: Pillow has read AVIF natively since 11.3, and the PyPI wheels that CVAT's Docker image
    # installs bundle libavif (`PIL.features.check("avif")` is true for them); CVAT's extension table
    # (Python's mimetypes) maps .avif to image/avif. Pillow reports an AVIF's irot/imir as its EXIF orientation,
    # which CVAT applies, so the manifest's displayed size is right for AVIF as for JPEG (media/heif.py).
    "cvat": Profile(
        name="cvat",
        rules=("readable", "supported_format", "manifest_name", "extension_mismatch"),
        image_formats=frozenset({"jpeg", "png", "webp", "bmp", "tiff", "gif", "avif"}),
        video_formats=frozenset({"mp4", "mov"}),
        manifest_displayed_size=True,
        description="CVAT: EXIF-rotated images accepted (the manifest records the displayed size), any decodable video",
        # One request per image: a truncated file whose header is whole passes here; `strict` is the one that looks.
        end_check=False,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown rule profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}") from None


def judge(facts: MediaFacts, key: str, profile: Profile | str) -> list[Violation]:
    """Every violation of the profile's rules, in the profile's rule order."""
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    return [v for name in chosen.rules for v in RULES[name](facts, key, chosen)]


def manifest_size(facts: MediaFacts, profile: Profile | str) -> tuple[int, int]:
    """(width, height) for the manifest: displayed size where the profile's tool honours EXIF orientation."""
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    if chosen.manifest_displayed_size and facts.display_width and facts.display_height:
        return facts.display_width, facts.display_height
    if facts.width and facts.height:
        return facts.width, facts.height
    raise ValueError("the facts hold no size: the object was not read as an image or video")
