"""A cluster's API through kubernetes-asyncio's ``ApiClient``, objects kept as plain dicts.

Manifests are dicts (``manifests.py``); they go out and come back as JSON, without the
generated models: the client's configuration, authentication, TLS and HTTP layer are
kubernetes-asyncio's, the paths come from the small table below. Streams (watches, pod
logs) are read line by line from the open response.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.stream.ws_client import (
    ERROR_CHANNEL,
    STDERR_CHANNEL,
    STDOUT_CHANNEL,
    WsApiClient,
)

from app.catalog.builtin.kubernetes.fields import ClusterFields, api_server
from app.catalog.builtin.kubernetes.tasks import CredentialsFields
from executors.base import ExecutorUnavailable

Object = dict[str, Any]
FIELD_MANAGER = "aegir"


@dataclass(frozen=True)
class Resource:
    """Where objects of a kind live: ``/api/v1`` or ``/apis/GROUP/VERSION``, plural, scope."""

    prefix: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        path = self.prefix
        if self.namespaced and namespace is not None:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return path if name is None else f"{path}/{name}"


RESOURCES: dict[str, Resource] = {
    "Namespace": Resource("/api/v1", "namespaces", namespaced=False),
    "Secret": Resource("/api/v1", "secrets"),
    "ConfigMap": Resource("/api/v1", "configmaps"),
    "Service": Resource("/api/v1", "services"),
    "PersistentVolumeClaim": Resource("/api/v1", "persistentvolumeclaims"),
    "PersistentVolume": Resource("/api/v1", "persistentvolumes", namespaced=False),
    "Pod": Resource("/api/v1", "pods"),
    "Event": Resource("/api/v1", "events"),
    "Deployment": Resource("/apis/apps/v1", "deployments"),
    "StatefulSet": Resource("/apis/apps/v1", "statefulsets"),
    "Job": Resource("/apis/batch/v1", "jobs"),
    "Ingress": Resource("/apis/networking.k8s.io/v1", "ingresses"),
    "SelfSubjectRulesReview": Resource(
        "/apis/authorization.k8s.io/v1", "selfsubjectrulesreviews", namespaced=False
    ),
}


class KubeError(Exception):
    """The API server answered an error: its HTTP status and the Status object's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def configuration(fields: ClusterFields, token: str, ca_dir: Path) -> Configuration:
    """The client's configuration: the API URL, the CA (a file in ``ca_dir``), the token."""
    config = Configuration(host=api_server(fields.api_url).rstrip("/"))
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    if fields.ca_certificate is not None:
        ca_file = ca_dir / "ca.crt"
        ca_file.write_text(fields.ca_certificate)
        config.ssl_ca_cert = str(ca_file)
    return config


def bearer_token(fields: ClusterFields, credentials: CredentialsFields | None) -> str:
    """The saved token; else the file named (read at each task: the kubelet renews it)."""
    if credentials is not None and credentials.token is not None:
        return credentials.token.get_secret_value()
    if fields.token_file is None:
        raise ExecutorUnavailable(
            "the cluster has no token: send one in its verify run (credentials.token)"
        )
    try:
        return Path(fields.token_file).read_text().strip()
    except OSError as error:
        raise ExecutorUnavailable(
            f"cannot read the cluster's token file {fields.token_file}: {error.strerror}"
        ) from None


@contextlib.asynccontextmanager
async def connect(fields: ClusterFields, token: str) -> AsyncIterator[Kube]:
    """A client of the cluster for the length of one task."""
    with tempfile.TemporaryDirectory(prefix="aegir-kube-") as ca_dir:
        config = configuration(fields, token, Path(ca_dir))
        async with ApiClient(config) as api:
            yield Kube(api, config)


@dataclass(frozen=True)
class ExecResult:
    """What a command exec'd in a container wrote, and its exit code (the status channel)."""

    stdout: str
    stderr: str
    exit_code: int


class Kube:
    """Requests to one cluster; every answer a dict, every error a ``KubeError``."""

    def __init__(self, api: ApiClient, config: Configuration) -> None:
        self.api = api
        self.config = config

    async def exec(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> ExecResult:
        """Run ``command`` in a running container (no TTY, no stdin), over a websocket."""
        query: list[tuple[str, Any]] = [
            ("command", command),
            ("container", container),
            ("stdout", "true"),
            ("stderr", "true"),
        ]
        path = RESOURCES["Pod"].path(namespace, pod) + "/exec"
        out: dict[int, list[str]] = {STDOUT_CHANNEL: [], STDERR_CHANNEL: []}
        code: int | None = None
        async with WsApiClient(self.config) as client:
            connecting = await client.call_api(
                path, "GET", query_params=query, auth_settings=["BearerToken"],
                _preload_content=False,
            )  # fmt: skip
            async with connecting as socket:
                async for message in socket:
                    data = message.data if isinstance(message.data, bytes) else b""
                    if not data:
                        continue
                    if data[0] == ERROR_CHANNEL:
                        code = WsApiClient.parse_error_data(data[1:])
                    elif data[0] in out:
                        out[data[0]].append(data[1:].decode("utf-8", "replace"))
        if code is None:
            raise KubeError(500, "Exec", "the exec stream ended without a status")
        return ExecResult("".join(out[STDOUT_CHANNEL]), "".join(out[STDERR_CHANNEL]), code)

    async def _open(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        limits: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self.api.call_api(
            path,
            method,
            query_params=list(query),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=limits,
        )
        if response.status >= 400:
            text = await response.text()
            response.release()
            raise _error(response.status, response.reason or "", text)
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Object:
        response = await self._open(method, path, query=query, body=body, content_type=content_type)
        async with response:
            data: Object = json.loads(await response.read() or b"{}")
        return data

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, query: Iterable[tuple[str, str]] = ()
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """An open GET (a watch, a followed log): its body read line by line as it comes."""
        # No total timeout: a watch or a followed log stays open; callers bound the wait.
        response = await self._open("GET", path, query=query, limits=aiohttp.ClientTimeout())
        async with response:
            yield response.content

    async def apply(self, manifest: Object) -> Object:
        """Server-side apply, field manager ``aegir``, taking over fields others set."""
        meta = manifest["metadata"]
        path = RESOURCES[manifest["kind"]].path(meta.get("namespace"), meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return await self.request(
            "PATCH", path, query=query, body=manifest, content_type="application/apply-patch+yaml"
        )

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Object | None:
        try:
            return await self.request("GET", RESOURCES[kind].path(namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Object]:
        query = [("labelSelector", _selector(labels))] if labels else []
        found = await self.request("GET", RESOURCES[kind].path(namespace), query=query)
        items: list[Object] = found.get("items", [])
        return items

    async def remove(
        self, kind: str, name: str, namespace: str | None = None, propagation: str = "Background"
    ) -> bool:
        """Delete one object; ``False`` if it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self.request("DELETE", RESOURCES[kind].path(namespace, name), body=body)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def merge_patch(
        self, kind: str, name: str, patch: Object, namespace: str | None = None
    ) -> Object:
        """A JSON merge patch: for fields of objects Aegir did not make (a provisioned
        volume's reclaim policy), where an apply would claim them as its own."""
        path = RESOURCES[kind].path(namespace, name)
        return await self.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )

    async def create(self, manifest: Object) -> Object:
        meta = manifest.get("metadata", {})
        path = RESOURCES[manifest["kind"]].path(meta.get("namespace"))
        return await self.request("POST", path, body=manifest)


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _error(status: int, reason: str, text: str) -> KubeError:
    try:
        message = str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        message = text
    return KubeError(status, reason, message[:500])
