"""Validating field types for task and entity fields.

Every string that may one day reach a command line goes through one of these: the
patterns refuse whitespace, shell metacharacters, ``..`` path segments, NUL and
newlines, and a leading ``-`` (which a command would read as an option).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A path segment that is not empty and not "..": the pattern itself says so, so that the
# document states the whole rule ("." and "..." are names; ".." would climb out).
_SEGMENT = (
    r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.(?:[A-Za-z0-9_-][A-Za-z0-9._-]*)?|\.\.[A-Za-z0-9._-]+)"
)
# The first segment of a relative path or a git ref: no leading "." or "-".
_FIRST = r"[A-Za-z0-9_][A-Za-z0-9._-]*"


def expects(what: str) -> WrapValidator:
    """Say what a value should look like when it does not match the type's pattern.

    People read "a host name such as web1.example.com", not the regular expression. The
    error keeps its type (``string_pattern_mismatch``) and location; the pattern stays in
    the JSON schema for clients.
    """

    def check(value: object, handler: ValidatorFunctionWrapHandler, _: ValidationInfo) -> object:
        try:
            return handler(value)
        except ValidationError as error:
            if any(item["type"] == "string_pattern_mismatch" for item in error.errors()):
                raise PydanticCustomError(
                    "string_pattern_mismatch", "Should be {expected}", {"expected": what}
                ) from None
            raise

    return WrapValidator(check)


def _lower(value: str) -> str:
    return value.lower()


Hostname = Annotated[
    str,
    StringConstraints(max_length=253, pattern=rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$"),
    expects("a host name such as web1.example.com: letters, digits and hyphens, separated by dots"),
    AfterValidator(_lower),
    Field(
        description="A host name (RFC 1123): letters, digits and hyphens, dot-separated.",
        examples=["web1.example.com"],
    ),
]

DomainName = Annotated[
    str,
    StringConstraints(max_length=253, pattern=rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})+$"),
    expects(
        "a domain name such as www.example.com: letters, digits and hyphens, with at least one dot"
    ),
    AfterValidator(_lower),
    Field(
        description="A fully qualified domain name, at least two labels.",
        examples=["www.example.com"],
    ),
]

Slug = Annotated[
    str,
    StringConstraints(max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$"),
    expects(
        "a short name such as drupal-10: lower-case letters, digits, '-' and '_', starting "
        "with a letter or digit"
    ),
    Field(description="Lower-case letters, digits, '-' and '_'.", examples=["drupal-10"]),
]

SafeRelativePath = Annotated[
    str,
    StringConstraints(max_length=1024, pattern=rf"^{_FIRST}(?:/{_SEGMENT})*/?$"),
    expects(
        "a relative path such as sites/default/files: letters, digits, '.', '_', '-' and "
        "'/', with no '..' or empty segments"
    ),
    Field(
        description="A relative path: letters, digits, '.', '_', '-' and '/'; no '..'.",
        examples=["sites/default/files"],
    ),
]

AbsolutePath = Annotated[
    str,
    StringConstraints(max_length=1024, pattern=rf"^/(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?$"),
    expects(
        "an absolute path such as /var/aegir/platforms/drupal-10: starting with '/', then "
        "letters, digits, '.', '_', '-' and '/', with no '..' or empty segments"
    ),
    Field(
        description="An absolute path: letters, digits, '.', '_', '-' and '/'; no '..'.",
        examples=["/var/aegir/platforms/drupal-10"],
    ),
]

DatabaseIdentifier = Annotated[
    str,
    StringConstraints(max_length=63, pattern=r"^[a-z_][a-z0-9_]*$"),
    expects(
        "a database name such as drupal_main: lower-case letters, digits and '_', not "
        "starting with a digit"
    ),
    Field(description="A database or user name: lower-case letters, digits and '_'."),
]

PosixUser = Annotated[
    str,
    StringConstraints(max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$"),
    expects(
        "a system user name such as aegir: lower-case letters, digits, '_' and '-', not "
        "starting with a digit"
    ),
    Field(description="A system user name.", examples=["aegir"]),
]

Port = Annotated[int, Field(ge=1, le=65535, description="A TCP port.")]

GitUrl = Annotated[
    str,
    StringConstraints(
        max_length=2048,
        pattern=r"^(https://|http://|ssh://|git@)[A-Za-z0-9._~:/@%+-]+$",
    ),
    expects(
        "a Git repository URL such as https://git.example.com/acme/site.git (https://, "
        "http://, ssh:// or git@host:path)"
    ),
    Field(
        description="A git repository URL (https://, ssh:// or git@host:path).",
        examples=["https://git.example.com/acme/site.git"],
    ),
]

GitRef = Annotated[
    str,
    StringConstraints(max_length=255, pattern=rf"^{_FIRST}(?:/{_SEGMENT})*/?$"),
    expects(
        "a Git branch, tag or commit such as main: letters, digits, '.', '_', '-' and '/', "
        "with no '..' or empty segments"
    ),
    Field(description="A git branch, tag or commit.", examples=["main"]),
]

Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    ),
    expects("an e-mail address such as admin@example.com"),
    Field(description="An e-mail address.", examples=["admin@example.com"]),
]

Label = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"),
    expects("text on one line, with no control characters"),
    Field(description="Free text on one line."),
]


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError(
            "ip_any_address", "Should be an IPv4 or IPv6 address such as 192.0.2.10"
        ) from None


IpAddress = Annotated[
    str,
    # A string, never a number: pydantic's own address type takes 0 (or false) as 0.0.0.0.
    StringConstraints(max_length=45),
    AfterValidator(_ip_address),
    Field(
        description="An IPv4 or IPv6 address, stored in its canonical form.",
        examples=["192.0.2.10"],
        json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    ),
]


def _secret_safe(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if re.search(r"[\x00\r\n]", text):
        raise ValueError("must not contain NUL or line breaks")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Secret = Annotated[
    SecretStr,
    Field(
        min_length=8,
        max_length=512,
        description="A secret: never shown again once saved.",
        # What _secret_safe enforces, said in the document too.
        json_schema_extra={"pattern": r"^[^\x00\r\n]*$"},
    ),
    AfterValidator(_secret_safe),
]
