"""The CVAT manifest rules the suite holds every manifest to: they accept what CVAT accepts and refuse the rest."""

from __future__ import annotations

import pytest

from media.cvat import manifest_has_items
from tests.cvat_manifest_rules import ManifestLedger, ManifestRuleError, problems

IMAGES = '{"version":"1.1"}\n{"type":"images"}\n'
VIDEO = '{"version":"1.1"}\n{"type":"video"}\n{"properties":{"name":"a.mp4","resolution":[640,480],"length":60}}\n'


def test_valid_manifests_pass() -> None:
    assert problems(IMAGES + '{"name":"a/b","extension":".jpg","width":4,"height":3}\n') == []
    assert problems(IMAGES + '{"name":"noext","extension":"","width":1,"height":1}') == []
    assert problems(VIDEO + '{"number":0,"pts":0}\n{"number":30,"pts":15360,"checksum":"ab"}\n') == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        (IMAGES, "CVAT refuses a manifest without items"),
        (VIDEO, "CVAT refuses a manifest without items"),
        ('{"version":"2.0"}\n{"type":"images"}\n{"name":"a","extension":".jpg","width":1,"height":1}', "line 1"),
        ('{"version":"1.1"}\n{"type":"pdf"}\n{"name":"a"}', "line 2"),
        (IMAGES + '{"name":"a","extension":".jpg","width":1}', "'height' must be a positive integer"),
        (IMAGES + '{"name":"a","extension":"jpg","width":1,"height":1}', "'extension' must be ''"),
        (IMAGES + '{"name":"a","extension":".jpg","width":true,"height":1}', "'width' must be"),
        (IMAGES + '{"name":"../a","extension":".jpg","width":1,"height":1}', "leaves the manifest's folder"),
        (IMAGES + '{"name":"a","extension":".jpg","width":1,"height":1}\n' * 2, "listed twice"),
        (IMAGES + "\n" + '{"name":"a","extension":".jpg","width":1,"height":1}', "blank line"),
        (IMAGES + "{name: a}", "not JSON"),
        (VIDEO + '{"number":0}', "'pts' must be an integer"),
        (VIDEO + '{"number":5,"pts":5}\n{"number":5,"pts":9}', "frame numbers must increase"),
        (VIDEO.replace('"length":60', '"length":0') + '{"number":0,"pts":0}', "properties.length"),
    ],
)
def test_what_cvat_refuses_is_refused(text: str, problem: str) -> None:
    found = problems(text)
    assert any(problem in p for p in found), found


def test_the_ledger_counts_and_names_the_file() -> None:
    ledger = ManifestLedger()
    ledger.check("good.jsonl", IMAGES + '{"name":"a","extension":".png","width":2,"height":2}')
    with pytest.raises(ManifestRuleError, match=r"bad\.jsonl breaks CVAT's manifest rules"):
        ledger.check("bad.jsonl", IMAGES)
    assert ledger.checked == ["good.jsonl", "bad.jsonl"] and ledger.refused == ["bad.jsonl"]


def test_manifest_has_items_agrees_with_the_rules() -> None:
    assert not manifest_has_items(IMAGES.encode()) and not manifest_has_items(VIDEO.encode())
    assert manifest_has_items((IMAGES + '{"name":"a","extension":".png","width":2,"height":2}\n').encode())
    assert manifest_has_items((VIDEO + '{"number":0,"pts":0}\n').encode())
