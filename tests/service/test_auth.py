"""API key extraction: Bearer, Basic (for browsers and Label Studio) and X-API-Key."""

from __future__ import annotations

import base64

import pytest

from service.auth import extract_key


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer s3cret"}, "s3cret"),
        ({"authorization": _basic("labeler", "s3cret")}, "s3cret"),
        ({"authorization": _basic("", "s3:cret")}, "s3:cret"),
        ({"x-api-key": "s3cret"}, "s3cret"),
        ({"authorization": "Basic !!!not-base64"}, None),
        ({"authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, None),
        ({}, None),
    ],
)
def test_extract_key_forms(headers: dict[str, str], expected: str | None) -> None:
    assert extract_key(headers) == expected
