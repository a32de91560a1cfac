"""Kubernetes kinds' own fields, and the validating types of what reaches a manifest.

``kubernetes-validate`` checks a manifest's shape, not its names or enum values: every
name, image reference, quantity and variable name is checked here, where the user typed
it, so a bad one is a 422 beside its field and never a half-applied environment.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, HttpUrl, SecretStr, StringConstraints, TypeAdapter
from pydantic_core import PydanticCustomError

from app.catalog.fields import AbsolutePath, DomainName, GitRef, GitUrl, Port, expects
from app.catalog.types import EntityFields

DnsLabel = Annotated[
    str,
    StringConstraints(max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"),
    expects(
        "a Kubernetes name such as web: lower-case letters, digits and '-', starting and "
        "ending with a letter or digit"
    ),
    Field(
        description="A Kubernetes name (RFC 1123 label): lower-case letters, digits and '-'.",
        examples=["web"],
    ),
]

# Environments name their namespace "aegir-NAME": 6 characters of the label's 63 are taken.
EnvironmentName = Annotated[
    str,
    StringConstraints(max_length=57, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,55}[a-z0-9])?$"),
    expects(
        "a name such as acme-prod: lower-case letters, digits and '-', 57 at most, starting "
        "and ending with a letter or digit"
    ),
    Field(
        description="Lower-case letters, digits and '-', 57 at most; its namespace is aegir-NAME.",
        examples=["acme-prod"],
    ),
]

DnsSubdomain = Annotated[
    str,
    StringConstraints(
        max_length=253,
        pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$",
    ),
    expects("a Kubernetes object name such as nginx: lower-case letters, digits, '-' and '.'"),
    Field(description="A Kubernetes object name (RFC 1123 subdomain).", examples=["nginx"]),
]

Quantity = Annotated[
    str,
    StringConstraints(max_length=32, pattern=r"^[1-9][0-9]*(?:Ki|Mi|Gi|Ti|Pi)$"),
    expects("a size such as 10Gi: a whole number followed by Ki, Mi, Gi, Ti or Pi"),
    Field(description="A size in binary units: Ki, Mi, Gi, Ti or Pi.", examples=["10Gi"]),
]

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# As the image reference grammar says: a first component is a registry only when it has a
# dot or a port, or is "localhost"; otherwise it is a (lower-case) path component.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = rf"(?:(?:{_HOST}(?:\.{_HOST})+(?::[0-9]+)?|{_HOST}:[0-9]+|localhost)/)"

ImageDigest = Annotated[
    str,
    StringConstraints(
        max_length=512,
        pattern=rf"^{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*@sha256:[a-f0-9]{{64}}$",
    ),
    expects(
        "an image pinned by digest such as registry.example.com/acme/site@sha256:… (64 hex digits)"
    ),
    Field(
        description="An image pinned by digest: REPOSITORY@sha256:HEX (no tag: a tag can "
        "move, a digest cannot).",
        examples=["registry.example.com/acme/site@sha256:" + "0" * 64],
    ),
]

EnvName = Annotated[
    str,
    StringConstraints(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
    expects(
        "a variable name such as DATABASE_URL: letters, digits and '_', not starting with a digit"
    ),
    Field(description="An environment variable's name."),
]

EnvValue = Annotated[
    str,
    StringConstraints(max_length=4096, pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$"),
    expects("text on one line, with no control characters"),
    Field(description="An environment variable's value, on one line; not a secret."),
]

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def _pem(value: str) -> str:
    """One or more certificates, re-wrapped: a paste that lost its line breaks still works."""
    bodies = _PEM.findall(value)
    if not bodies or _PEM.sub("", value).strip():
        raise ValueError("must be PEM certificates (-----BEGIN CERTIFICATE----- ...)")
    blocks = []
    for body in bodies:
        compact = "".join(body.split())
        try:
            base64.b64decode(compact, validate=True)
        except binascii.Error:
            raise ValueError("a certificate's body is not base64") from None
        lines = [compact[i : i + 64] for i in range(0, len(compact), 64)]
        blocks.append(
            "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----"])
        )
    return "\n".join(blocks) + "\n"


# The same rule in the document as in _pem: blocks of base64 in groups of four (line breaks
# and spaces allowed between groups, as between a file's 64-character lines).
PEM_PATTERN = (
    r"^\s*(?:-----BEGIN CERTIFICATE-----\s*(?:[A-Za-z0-9+/]{4}\s*)+"
    r"(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\s*-----END CERTIFICATE-----\s*)+$"
)

PemCertificates = Annotated[
    str,
    StringConstraints(max_length=65536, pattern=PEM_PATTERN),
    AfterValidator(_pem),
    Field(description="PEM certificates: the cluster's certificate authority."),
]


def _token(value: SecretStr) -> SecretStr:
    """A bearer token: one printable word; the line break of a pasted file is dropped."""
    text = value.get_secret_value().strip()
    if not text or not re.fullmatch(r"[\x21-\x7e]+", text):
        raise ValueError("must be one word of printable ASCII (a bearer token)")
    return SecretStr(text)


# A service account's token is a JWT of one or two kilobytes: longer than ``Secret``.
ClusterToken = Annotated[
    SecretStr,
    Field(min_length=8, max_length=16384, description="A secret: never shown again once saved."),
    AfterValidator(_token),
]


_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url(value: str) -> str:
    try:
        _HTTP_URL.validate_python(value)
    except ValueError:
        raise PydanticCustomError(
            "url_parsing", "Should be an http(s) URL such as https://k8s.example.com:6443"
        ) from None
    return value


def api_server(value: str) -> str:
    """The URL in its normal form (``HTTPS://K8S.example.com`` is ``https://k8s.example.com/``)."""
    return str(_HTTP_URL.validate_python(value))


# Kept as typed, checked as an http(s) URL: its normal form can be longer than what was
# typed (a "/" added, non-ASCII %-encoded), and what is stored must read back.
ApiServerUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2083),
    AfterValidator(_http_url),
    Field(json_schema_extra={"format": "uri"}),
]


class ClusterFields(EntityFields):
    api_url: ApiServerUrl = Field(description="The cluster's API server, https://HOST[:PORT].")
    ca_certificate: PemCertificates | None = Field(
        default=None,
        description="The API server's certificate authority (PEM); the system's when empty.",
    )
    # The token itself is a secret task value (the cluster's ``credentials`` task):
    # entity fields are not encrypted at rest. A file stays possible for Aegir running in
    # the cluster, where the kubelet keeps a short-lived token fresh in one.
    token_file: AbsolutePath | None = Field(
        default=None,
        description="Only when no token is saved: a file on the worker machines holding "
        "one, e.g. /var/run/secrets/kubernetes.io/serviceaccount/token when Aegir runs in "
        "the cluster (the kubelet renews it).",
    )
    ingress_class: DnsSubdomain = Field(
        default="nginx", description="The IngressClass that serves environments' hostnames."
    )
    storage_class: DnsSubdomain | None = Field(
        default=None,
        description="The StorageClass of files and databases; the cluster's default when empty.",
    )


class ProjectFields(EntityFields):
    git_url: GitUrl = Field(description="The application's repository.")
    web_port: Port = Field(default=8080, description="The port the web container listens on.")
    cli_container: DnsLabel = Field(
        default="cli",
        description="The container that holds the CLI (drush): installs, logins and "
        "commands run there.",
    )
    env: dict[EnvName, EnvValue] = Field(
        default={},
        max_length=100,
        description="Environment variables of every environment (no secrets: they are "
        "visible to anyone who can read the project).",
    )


class ReleaseFields(EntityFields):
    image: ImageDigest = Field(description="The built image, pinned by digest.")
    git_ref: GitRef = Field(description="The branch, tag or commit it was built from.")


class EnvironmentFields(EntityFields):
    tier: Literal["production", "development"] = Field(
        default="development",
        description="Production environments are backed up before each deploy.",
    )
    hostnames: list[DomainName] = Field(
        default=[], max_length=50, description="The domains its Ingress answers to."
    )
    replicas: int = Field(default=1, ge=1, le=50, description="Application pods.")
    storage_size: Quantity = Field(default="5Gi", description="Its files volume.")
    database_engine: Literal["mariadb", "postgresql"] = Field(
        default="mariadb", description="The database server it runs beside the application."
    )
