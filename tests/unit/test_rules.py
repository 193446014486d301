"""Rule profiles: each rule in both profiles, its message and the command that fixes it."""

from __future__ import annotations

import shlex

import pytest

from media.facts import MediaFacts
from media.rules import ALL_RULES, PROFILES, RULES, Violation, get_profile, judge, manifest_size

STRICT, CVAT = PROFILES["strict"], PROFILES["cvat"]


def image(fmt: str = "jpeg", orientation: int | None = None, width: int = 4000, height: int = 3000) -> MediaFacts:
    swap = orientation in (5, 6, 7, 8)
    return MediaFacts(
        kind="image",
        format=fmt,
        width=width,
        height=height,
        orientation=orientation,
        display_width=height if swap else width,
        display_height=width if swap else height,
        mode="RGB",
    )


def video(fmt: str = "mp4", brand: str = "mp42", pix_fmt: str | None = "yuv420p") -> MediaFacts:
    return MediaFacts(
        kind="video",
        format=fmt,
        major_brand=brand,
        compatible_brands=[brand, "isom"],
        codec="avc1",
        pix_fmt=pix_fmt,
        width=1920,
        height=1080,
        display_width=1920,
        display_height=1080,
    )


def rules_hit(violations: list[Violation]) -> list[str]:
    return [v.rule for v in violations]


def test_profiles_and_rule_names() -> None:
    assert ALL_RULES == (
        "readable",
        "supported_format",
        "exif_orientation",
        "mp4_brand",
        "mp4_pixel_format",
        "manifest_name",
        "extension_mismatch",
    )
    assert set(RULES) == set(ALL_RULES)
    assert STRICT.rules == ALL_RULES
    assert CVAT.rules == ("readable", "supported_format", "manifest_name", "extension_mismatch")
    assert STRICT.image_formats == {"jpeg", "png", "webp", "bmp", "tiff"}
    assert STRICT.video_formats == {"mp4"}
    assert CVAT.image_formats == STRICT.image_formats | {"gif", "avif"}
    assert CVAT.video_formats == {"mp4", "mov"}
    assert get_profile("cvat") is CVAT
    # Truncated uploads are looked for (one more request per JPEG/PNG, sent with the first) only under strict.
    assert (STRICT.end_check, CVAT.end_check) == (True, False)


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown rule profile 'vi'; known profiles: cvat, strict"):
        get_profile("vi")
    with pytest.raises(ValueError, match="known profiles"):
        judge(image(), "a.jpg", "nope")


@pytest.mark.parametrize("profile", ["strict", "cvat"])
def test_compliant_files_pass_both_profiles(profile: str) -> None:
    assert judge(image(orientation=1), "photos/a.jpg", profile) == []
    assert judge(image("png"), "b.png", profile) == []
    assert judge(image("jpeg", orientation=None), "upper/CASE.JPEG", profile) == []
    assert judge(video(), "clips/c.mp4", profile) == []


@pytest.mark.parametrize("profile", ["strict", "cvat"])
def test_unreadable_gets_only_the_readable_violation(profile: str) -> None:
    facts = image(orientation=6)
    facts.error = "truncated JPEG: no end-of-image marker"
    violations = judge(facts, "dir/broken.jpg", profile)
    assert violations == [
        Violation(
            rule="readable",
            severity="WARN",
            message="cannot be read: truncated JPEG: no end-of-image marker",
            remediation="re-export or re-upload the file; it cannot be decoded as it is",
        )
    ]
    bad_video = video(brand="isom", pix_fmt="yuv444p")
    bad_video.error = "truncated MP4: box 'mdat' at offset 40 claims 9 bytes, past the end of the file (30 bytes)"
    assert rules_hit(judge(bad_video, "v.mp4", profile)) == ["readable"]


@pytest.mark.parametrize("profile", ["strict", "cvat"])
def test_unrecognised_content(profile: str) -> None:
    facts = MediaFacts(error="not a recognised image or video (starts with b'hello wo')")
    assert rules_hit(judge(facts, "notes.jpg", profile)) == ["readable"]
    # A kind "other" without an error (nothing produces it today) still cannot pass as media.
    [violation] = judge(MediaFacts(), "odd.bin", profile)
    assert violation.rule == "supported_format"
    assert violation.message == f"not an image or video that {profile} accepts"


def test_gif_is_rejected_by_strict_only() -> None:
    [violation] = judge(image("gif"), "anim/loop.gif", "strict")
    assert violation.rule == "supported_format"
    assert violation.message == "image format gif is not accepted by strict (accepted: bmp, jpeg, png, tiff, webp)"
    assert violation.remediation == "mogrify -format jpg anim/loop.gif"
    assert judge(image("gif"), "anim/loop.gif", "cvat") == []


def test_mov_is_rejected_by_strict_only() -> None:
    facts = video("mov", brand="qt  ")
    [violation] = judge(facts, "clips/take 1.mov", "strict")
    assert violation.rule == "supported_format"
    assert violation.message == "video format mov is not accepted by strict (accepted: mp4)"
    assert violation.remediation == (
        "ffmpeg -i 'clips/take 1.mov' -c:v libx264 -pix_fmt yuv420p -brand mp42 'clips/take 1-fixed.mp4'"
    )
    assert judge(facts, "clips/take 1.mov", "cvat") == []


@pytest.mark.parametrize("profile", ["strict", "cvat"])
def test_extension_that_lies_about_the_content(profile: str) -> None:
    [violation] = judge(image("png"), "scans/page.JPG", profile)
    assert violation.rule == "supported_format"
    assert violation.message == "the name ends in .jpg but the content is png"
    assert violation.remediation == "mv scans/page.JPG scans/page.png"


def test_extension_that_lies_and_an_unsupported_format_together() -> None:
    [violation] = judge(image("gif"), "x/a.png", "strict")
    assert violation.message.startswith("image format gif is not accepted by strict")
    assert violation.message.endswith("; the name ends in .png but the content is gif")
    assert violation.remediation == "mogrify -format jpg x/a.png"


@pytest.mark.parametrize("profile", ["strict", "cvat"])
@pytest.mark.parametrize(
    ("key", "named", "renamed"),
    [
        ("shots/photo.xyz", "its name ends in .xyz", "shots/photo.jpg"),
        ("shots/scan", "its name has no extension", "shots/scan.jpg"),
        ("shots/IMG.JFIF", "its name ends in .JFIF", "shots/IMG.jpg"),
        ("shots/cloud.bin", "its name ends in .bin", "shots/cloud.jpg"),
    ],
)
def test_an_image_named_as_no_image_cvat_knows_is_left_out(profile: str, key: str, named: str, renamed: str) -> None:
    [violation] = judge(image(orientation=1), key, profile)
    assert violation.rule == "extension_mismatch"
    assert violation.message == (
        f"left out of the manifest: the content is a jpeg image but {named}, which CVAT does not treat as an image"
    )
    assert violation.remediation.startswith(f"rename it to end in .jpg: mv {key} {renamed} (in a bucket: aws s3 mv")
    assert f"gcloud storage mv gs://BUCKET/{key} gs://BUCKET/{renamed}" in violation.remediation


def test_extension_mismatch_leaves_lying_known_extensions_to_supported_format() -> None:
    """`clip.mp4` holding a JPEG is one finding, with supported_format's rename, not two."""
    assert rules_hit(judge(image(orientation=1), "clip.mp4", "cvat")) == ["supported_format"]
    assert judge(image("tiff"), "scan.TIF", "cvat") == []
    assert judge(video(), "clips/no-extension", "cvat") == []  # videos are not this rule's business
    [renamed] = judge(image("tiff"), "scan.dat", "cvat")
    assert "mv scan.dat scan.tif" in renamed.remediation


def test_extension_mismatch_quotes_keys_for_the_shell() -> None:
    [violation] = judge(image(orientation=1), "odd/it's here", "cvat")
    first = violation.remediation.removeprefix("rename it to end in .jpg: ").split(" (in a bucket")[0]
    assert shlex.split(first) == ["mv", "odd/it's here", "odd/it's here.jpg"]


def test_mp4_and_mov_extensions_are_one_family() -> None:
    assert judge(video("mp4", brand="mp42"), "a.mov", "cvat") == []
    assert judge(video("mov", brand="qt  "), "a.mp4", "cvat") == []


def test_fixes_name_the_full_key_with_its_folders_and_prefix() -> None:
    """A fix names the object as the bucket does (prefix and folders included), so it can be pasted as it is."""
    [violation] = judge(image(orientation=6), "data/2024/trip/IMG 7.jpg", "strict")
    assert violation.remediation.startswith("mogrify -auto-orient 'data/2024/trip/IMG 7.jpg' ")
    [clip] = judge(video(brand="isom"), "data/x/c.mp4", "strict")
    assert clip.remediation == "ffmpeg -i data/x/c.mp4 -c:v libx264 -pix_fmt yuv420p -brand mp42 data/x/c-fixed.mp4"


def test_heic_is_unsupported_everywhere_and_converted_with_libheif() -> None:
    """CVAT decodes with stock Pillow, which cannot read HEIC: both profiles reject it, with the size still known."""
    for profile in ("strict", "cvat"):
        [violation] = judge(image("heic"), "IMG_0001.HEIC", profile)
        assert violation.message.startswith("image format heic is not accepted by")
        assert violation.remediation == "heif-convert IMG_0001.HEIC IMG_0001.jpg"


def test_avif_is_accepted_by_cvat_and_rejected_by_strict() -> None:
    """Pillow (and so CVAT) reads AVIF natively; Vi does not accept it."""
    assert judge(image("avif"), "photo.avif", "cvat") == []
    [violation] = judge(image("avif"), "my photo.avif", "strict")
    assert violation.message.startswith("image format avif is not accepted by strict")
    assert violation.remediation == "heif-convert 'my photo.avif' 'my photo.jpg'"


def test_rotated_heif_images_get_their_displayed_size_in_cvat_and_one_conversion_in_strict() -> None:
    """irot/imir show as the orientation; in strict the conversion fixes it too, so it is the only finding."""
    rotated = image("avif", orientation=6, width=4032, height=3024)
    assert judge(rotated, "p.avif", "cvat") == []
    assert manifest_size(rotated, "cvat") == (3024, 4032)
    for fmt in ("avif", "heic"):
        [violation] = judge(image(fmt, orientation=6), f"p.{fmt}", "strict")
        assert violation.remediation == f"heif-convert p.{fmt} p.jpg"


@pytest.mark.parametrize(
    ("orientation", "meaning"),
    [
        (2, "mirrored horizontally"),
        (3, "rotated 180°"),
        (4, "mirrored vertically"),
        (5, "mirrored horizontally and rotated 270° CW"),
        (6, "rotated 90° CW"),
        (7, "mirrored horizontally and rotated 90° CW"),
        (8, "rotated 270° CW"),
        (9, "not a valid value"),
    ],
)
def test_exif_orientation_in_strict(orientation: int, meaning: str) -> None:
    [violation] = judge(image(orientation=orientation), "people/my photo.jpg", "strict")
    assert violation.rule == "exif_orientation"
    assert violation.severity == "WARN"
    assert violation.message == (
        f"EXIF orientation {orientation} ({meaning}); Vi rejects images whose orientation is not 1"
    )
    assert violation.remediation.startswith("mogrify -auto-orient 'people/my photo.jpg' ")
    assert "exiftool -Orientation= -overwrite_original 'people/my photo.jpg'" in violation.remediation
    assert judge(image(orientation=orientation), "people/my photo.jpg", "cvat") == []


@pytest.mark.parametrize("orientation", [None, 0, 1])
def test_upright_orientations_pass_strict(orientation: int | None) -> None:
    assert judge(image(orientation=orientation), "a.jpg", "strict") == []


def test_exif_rule_ignores_videos_and_video_rules_ignore_images() -> None:
    clip = video()
    clip.orientation = 6  # nonsense for a video, but the image rule must not look at it
    assert judge(clip, "a.mp4", "strict") == []
    assert RULES["mp4_brand"](image(), "a.jpg", STRICT) == []
    assert RULES["mp4_pixel_format"](image(), "a.jpg", STRICT) == []


@pytest.mark.parametrize("brand", ["isom", "mp41", "avc1", "M4V "])
def test_mp4_brand_in_strict(brand: str) -> None:
    [violation] = judge(video(brand=brand), "videos/clip.mp4", "strict")
    assert violation.rule == "mp4_brand"
    assert violation.message == f"MP4 major brand is {brand!r}; Vi requires 'mp42'"
    assert violation.remediation == (
        "ffmpeg -i videos/clip.mp4 -c:v libx264 -pix_fmt yuv420p -brand mp42 videos/clip-fixed.mp4"
    )
    assert judge(video(brand=brand), "videos/clip.mp4", "cvat") == []


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv422p", "yuv420p10le", "gray"])
def test_mp4_pixel_format_in_strict(pix_fmt: str) -> None:
    [violation] = judge(video(pix_fmt=pix_fmt), "clip.mp4", "strict")
    assert violation.rule == "mp4_pixel_format"
    assert violation.message == f"pixel format is {pix_fmt}; Vi requires yuv420p"
    assert violation.remediation == "ffmpeg -i clip.mp4 -c:v libx264 -pix_fmt yuv420p -brand mp42 clip-fixed.mp4"
    assert judge(video(pix_fmt=pix_fmt), "clip.mp4", "cvat") == []


def test_unknown_pixel_format_is_flagged_in_strict() -> None:
    facts = video(pix_fmt=None)
    facts.codec = "mp4v"
    [violation] = judge(facts, "old.mp4", "strict")
    assert violation.message == "pixel format of codec 'mp4v' could not be determined; Vi requires yuv420p"


def test_several_findings_come_in_rule_order() -> None:
    assert rules_hit(judge(video(brand="isom", pix_fmt="yuv444p"), "a.mp4", "strict")) == [
        "mp4_brand",
        "mp4_pixel_format",
    ]


def test_file_names_are_shell_quoted() -> None:
    key = "evil/$(rm -rf ~); x.mp4"
    [violation] = judge(video(brand="isom"), key, "strict")
    argv = shlex.split(violation.remediation)
    assert argv[:3] == ["ffmpeg", "-i", "evil/$(rm -rf ~); x.mp4"]


def test_manifest_size_uses_displayed_size_only_for_cvat() -> None:
    rotated = image(orientation=6, width=4000, height=3000)
    assert manifest_size(rotated, "cvat") == (3000, 4000)
    assert manifest_size(rotated, STRICT) == (4000, 3000)
    assert manifest_size(image(orientation=1), "cvat") == (4000, 3000)
    with pytest.raises(ValueError, match="no size"):
        manifest_size(MediaFacts(error="empty object (0 bytes)"), "cvat")
