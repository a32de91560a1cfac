"""Validating field types refuse what could reach a command line as something else."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from app.catalog import fields

HOSTILE = [
    "a;rm -rf /",
    "a && b",
    "$(id)",
    "`id`",
    "a|b",
    "a\nb",
    "a\x00b",
    "../etc",
    "a/../../b",
    "-rf",
    "--uri=evil",
    "a b",
    "a'b",
    'a"b',
    "a>b",
    "",
]

STRING_TYPES = {
    "Hostname": fields.Hostname,
    "DomainName": fields.DomainName,
    "Slug": fields.Slug,
    "SafeRelativePath": fields.SafeRelativePath,
    "AbsolutePath": fields.AbsolutePath,
    "DatabaseIdentifier": fields.DatabaseIdentifier,
    "PosixUser": fields.PosixUser,
    "GitRef": fields.GitRef,
    "GitUrl": fields.GitUrl,
    "Email": fields.Email,
}


@pytest.mark.parametrize("name", sorted(STRING_TYPES))
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(STRING_TYPES[name]).validate_python(value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Hostname", "Web1.Example.COM", "web1.example.com"),
        ("DomainName", "www.example.com", "www.example.com"),
        ("SafeRelativePath", "sites/default/files", "sites/default/files"),
        ("AbsolutePath", "/var/aegir/platforms/d10", "/var/aegir/platforms/d10"),
        (
            "GitUrl",
            "https://git.example.com/acme/site.git",
            "https://git.example.com/acme/site.git",
        ),
        ("GitRef", "release/1.2", "release/1.2"),
        ("Email", "ops@example.com", "ops@example.com"),
    ],
)
def test_ordinary_values_are_accepted(name: str, value: str, expected: Any) -> None:
    assert TypeAdapter(STRING_TYPES[name]).validate_python(value) == expected


def test_a_domain_needs_two_labels() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(fields.DomainName).validate_python("localhost")


def test_secrets_refuse_line_breaks_and_hide_their_value() -> None:
    adapter: TypeAdapter[SecretStr] = TypeAdapter(fields.Secret)
    with pytest.raises(ValidationError):
        adapter.validate_python("abcdefgh\nrest")
    secret = adapter.validate_python("correct horse battery")
    assert "correct" not in repr(secret)
    assert adapter.dump_json(secret) == b'"**********"'


def test_a_secret_must_be_valid_unicode() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(fields.Secret).validate_python("abcdefgh\ud800")
