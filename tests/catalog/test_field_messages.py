"""Each custom field type says what it expects in words, never its regular expression."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from app.catalog import fields
from app.catalog.builtin.kubernetes import fields as kubernetes_fields

BAD = "not valid!"  # a space and a '!': no pattern above accepts it

CASES: list[tuple[Any, str]] = [
    (fields.Hostname, "a host name such as web1.example.com"),
    (fields.DomainName, "a domain name such as www.example.com"),
    (fields.Slug, "a short name such as drupal-10"),
    (fields.SafeRelativePath, "a relative path such as sites/default/files"),
    (fields.AbsolutePath, "an absolute path such as /var/aegir/platforms/drupal-10"),
    (fields.DatabaseIdentifier, "a database name such as drupal_main"),
    (fields.PosixUser, "a system user name such as aegir"),
    (fields.GitUrl, "a Git repository URL such as https://git.example.com/acme/site.git"),
    (fields.GitRef, "a Git branch, tag or commit such as main"),
    (fields.Email, "an e-mail address such as admin@example.com"),
    (kubernetes_fields.DnsLabel, "a Kubernetes name such as web"),
    (kubernetes_fields.EnvironmentName, "a name such as acme-prod"),
    (kubernetes_fields.DnsSubdomain, "a Kubernetes object name such as nginx"),
    (kubernetes_fields.Quantity, "a size such as 10Gi"),
    (kubernetes_fields.ImageDigest, "an image pinned by digest"),
    (kubernetes_fields.EnvName, "a variable name such as DATABASE_URL"),
]


@pytest.mark.parametrize(("field_type", "expected"), CASES)
def test_a_bad_value_is_told_what_is_expected(field_type: Any, expected: str) -> None:
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(field_type).validate_python(BAD)
    (error,) = raised.value.errors()
    assert error["msg"] == f"Should be {expected}" or error["msg"].startswith(
        f"Should be {expected}"
    )
    assert "pattern" not in error["msg"] and "^" not in error["msg"]
    assert error["type"] == "string_pattern_mismatch"  # clients that match on it still do


def test_one_line_text_says_so() -> None:
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(fields.Label).validate_python("two\nlines")
    assert (
        raised.value.errors()[0]["msg"] == "Should be text on one line, with no control characters"
    )


def test_the_schema_keeps_the_pattern_and_good_values_still_pass() -> None:
    assert "pattern" in TypeAdapter(fields.Hostname).json_schema()
    assert TypeAdapter(fields.Hostname).validate_python("Web1.Example.com") == "web1.example.com"
    # The pattern says the whole rule, '..' and empty segments included, and so do the words.
    for climbing in ("/var/../etc", "/var//etc"):
        with pytest.raises(ValidationError) as raised:
            TypeAdapter(fields.AbsolutePath).validate_python(climbing)
        assert raised.value.errors()[0]["msg"].endswith("with no '..' or empty segments")


async def test_the_api_says_it_in_words_at_the_same_location(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/api/v1/servers", json={"name": "bad name!", "fields": {"hostname": "web1.example.com"}}
    )
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert error["msg"].startswith("Should be a host name such as web1.example.com")
