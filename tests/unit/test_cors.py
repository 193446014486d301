"""The CORS judge: each verdict, wildcard origins, case rules, and fixes that make the verdict ALLOWED."""

from __future__ import annotations

import json
import shlex

import pytest

from media.cors import (
    CorsRule,
    CorsStatus,
    cors_fix,
    gcs_cors_json,
    judge_cors,
    origin_problem,
    recommended_rules,
    verdict_for,
)

APP = "https://app.cvat.ai"
FULL = CorsRule((APP,), ("GET", "HEAD"), ("*",))


def status(rules: list[CorsRule], origin: str = APP, *, private: bool = True) -> CorsStatus:
    return judge_cors(rules, origin, private=private)[0]


def test_allowed_when_a_rule_names_the_origin_with_get_head_and_range():
    assert status([FULL]) is CorsStatus.ALLOWED
    assert status([CorsRule((APP,), ("GET", "HEAD"), ("range",))]) is CorsStatus.ALLOWED


def test_missing_without_rules_or_without_a_matching_origin():
    assert status([]) is CorsStatus.MISSING
    assert status([CorsRule(("https://other.example",), ("GET", "HEAD"), ("*",))]) is CorsStatus.MISSING
    # An origin is scheme + host + port: http and another port are other origins.
    assert status([CorsRule(("http://app.cvat.ai",), ("GET", "HEAD"), ("*",))]) is CorsStatus.MISSING
    assert status([CorsRule(("https://app.cvat.ai:8443",), ("GET", "HEAD"), ("*",))]) is CorsStatus.MISSING


@pytest.mark.parametrize(
    ("rule", "lacking"),
    [
        (CorsRule((APP,), ("GET",), ("*",)), "HEAD"),
        (CorsRule((APP,), ("HEAD",), ("*",)), "GET"),
        (CorsRule((APP,), ("GET", "HEAD"), ()), "header Range"),
        (CorsRule((APP,), ("GET", "HEAD"), ("Authorization",)), "header Range"),
    ],
)
def test_too_narrow_names_what_is_lacking(rule: CorsRule, lacking: str):
    found, reason = judge_cors([rule], APP, private=True)
    assert found is CorsStatus.TOO_NARROW
    assert lacking in reason


def test_one_complete_rule_for_the_origin_suffices_wherever_it_stands():
    # Providers answer with the first rule matching origin, method and requested headers.
    narrow = CorsRule((APP,), ("GET", "HEAD"), ())
    assert status([narrow, FULL]) is CorsStatus.ALLOWED
    assert status([FULL, narrow]) is CorsStatus.ALLOWED
    # Without one, the reason is the shortfall of the first rule for the origin that allows GET.
    found, reason = judge_cors([CorsRule((APP,), ("PUT",), ("*",)), narrow], APP, private=True)
    assert found is CorsStatus.TOO_NARROW and "header Range" in reason and "GET" not in reason


def test_star_origin_is_too_broad_on_a_private_bucket_only():
    star = CorsRule(("*",), ("GET", "HEAD"), ("*",))
    assert status([star], private=True) is CorsStatus.TOO_BROAD
    assert status([star], private=False) is CorsStatus.ALLOWED
    # A precise rule does not excuse a broad one next to it.
    assert status([FULL, star], private=True) is CorsStatus.TOO_BROAD


def test_too_narrow_comes_before_too_broad():
    assert status([CorsRule(("*",), ("GET",), ())], private=True) is CorsStatus.TOO_NARROW


@pytest.mark.parametrize(
    ("pattern", "origin", "matches"),
    [
        ("https://*.example.com", "https://app.example.com", True),
        ("https://*.example.com", "https://a.b.example.com", True),
        ("https://*.example.com", "https://example.com", False),
        ("https://*.example.com", "http://app.example.com", False),
        ("https://*.example.com", "https://app.example.com.evil.net", False),
        ("https://app.example.*", "https://app.example.org", True),
    ],
)
def test_wildcard_subdomain_origins(pattern: str, origin: str, matches: bool):
    rules = [CorsRule((pattern,), ("GET", "HEAD"), ("*",))]
    assert (status(rules, origin) is CorsStatus.ALLOWED) is matches


def test_case_rules():
    # Methods and header names are case-insensitive.
    assert status([CorsRule((APP,), ("get", "Head"), ("RANGE",))]) is CorsStatus.ALLOWED
    # Header wildcards match as providers do (x-amz-*), case-insensitively.
    assert status([CorsRule((APP,), ("GET", "HEAD"), ("R*",))]) is CorsStatus.ALLOWED
    # The configured origin is compared as the browser sends it: lower case.
    assert status([FULL], "HTTPS://App.CVAT.ai") is CorsStatus.ALLOWED
    # A rule origin written in another case never matches the browser's origin; the reason says why.
    found, reason = judge_cors([CorsRule(("https://App.CVAT.ai",), ("GET", "HEAD"), ("*",))], APP, private=True)
    assert found is CorsStatus.MISSING
    assert "differs only in case" in reason


def test_method_star_allows_every_method():
    assert status([CorsRule((APP,), ("*",), ("*",))]) is CorsStatus.ALLOWED


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://app.cvat.ai", True),
        ("http://localhost:8080", True),
        ("https://app.cvat.ai/", False),
        ("https://app.cvat.ai/tasks", False),
        ("app.cvat.ai", False),
        ("ftp://app.cvat.ai", False),
        ("https://user@app.cvat.ai", False),
        ("https://", False),
    ],
)
def test_origin_problem(value: str, ok: bool):
    assert (origin_problem(value) is None) is ok


def _fixed_rules_s3(fix: str) -> list[CorsRule]:
    """The rules the S3 command would put, read back from its JSON argument."""
    doc = json.loads(shlex.split(fix)[-1])
    return [
        CorsRule(
            tuple(r["AllowedOrigins"]), tuple(r["AllowedMethods"]), tuple(r.get("AllowedHeaders", ())),
            tuple(r.get("ExposeHeaders", ())), r.get("MaxAgeSeconds"),
        )
        for r in doc["CORSRules"]
    ]  # fmt: skip


@pytest.mark.parametrize(
    "rules",
    [
        [],
        [CorsRule((APP,), ("GET",), ())],
        [CorsRule(("*",), ("GET", "HEAD"), ("*",))],
        [CorsRule(("https://other.example",), ("PUT",), ("*",)), CorsRule((APP,), ("GET",), ())],
        [CorsRule(("https://*.example.com",), ("GET",), ("*",))],
    ],
)
def test_s3_fix_makes_the_origin_allowed_and_keeps_other_apps_rules(rules: list[CorsRule]):
    verdict = verdict_for("s3", "media", APP, rules, private=True)
    assert verdict.status is not CorsStatus.ALLOWED
    assert verdict.fix.startswith("aws s3api put-bucket-cors --bucket media --cors-configuration ")
    fixed = _fixed_rules_s3(verdict.fix)
    assert judge_cors(fixed, APP, private=True)[0] is CorsStatus.ALLOWED
    others = [r for r in rules if "*" not in r.origins and r.origins != (APP,)]
    assert all(r in fixed for r in others)  # other apps' rules, a wildcard subdomain rule included, are kept


def test_gcs_fix_is_a_cors_file_with_range_allowed():
    verdict = verdict_for("gcs", "media", APP, [], private=True)
    assert "gcloud storage buckets update gs://media --cors-file=cors.json" in verdict.fix
    doc = gcs_cors_json(recommended_rules([], APP))
    assert doc[0]["origin"] == [APP]
    assert doc[0]["method"] == ["GET", "HEAD"]
    assert "Range" in doc[0]["responseHeader"]
    assert json.dumps(doc, indent=2) in verdict.fix


def test_azure_fix_clears_then_adds_at_account_level():
    fix = cors_fix("azure", "media", APP, [CorsRule(("*",), ("GET",), ("*",))], account="acct")
    lines = fix.splitlines()
    assert lines[0] == "az storage cors clear --services b --account-name acct"
    assert lines[1].startswith(f"az storage cors add --services b --methods GET HEAD --origins {APP} ")
    assert "--allowed-headers '*'" in lines[1] and lines[1].endswith("--account-name acct")
    assert len(lines) == 2  # the broad rule is not added back


def test_allowed_has_no_fix():
    assert verdict_for("s3", "media", APP, [FULL], private=True).fix == ""
