"""The server as the remote CLI sees it: its REST API, with errors said in words."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import httpx

from app.client.config import Profile, remember_kinds

Json = Any


class ApiError(Exception):
    """The server said no; ``str()`` is what to show the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def describe(response: httpx.Response) -> str:
    """A server error as a sentence: ``detail``, or each 422 field path with its message."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        parts = []
        for error in detail:
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        detail = "; ".join(parts)
    return f"{response.status_code}: {detail}"


class Api:
    """One server, one token. Names are resolved to ids through the list endpoints."""

    def __init__(self, profile: Profile, timeout: float = 30.0) -> None:
        self.profile = profile
        self.http = httpx.Client(
            base_url=profile.url,
            headers={"Authorization": f"Bearer {profile.token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Json:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(0, f"cannot reach {self.profile.url}: {error}") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, describe(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Json:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Json = None) -> Json:
        return self.call("POST", path, json=body)

    @cached_property
    def catalog(self) -> Json:
        catalog = self.get("/api/v1/catalog")
        remember_kinds([kind["name"] for kind in catalog["entity_kinds"]])
        return catalog

    def kind(self, name: str) -> Json:
        """A kind of the server's catalogue by its name or plural (plugins included)."""
        for kind in self.catalog["entity_kinds"]:
            if name in (kind["name"], kind["plural"]):
                return kind
        known = ", ".join(sorted(k["name"] for k in self.catalog["entity_kinds"]))
        raise ApiError(404, f"no entity kind {name!r} on this server (it has: {known})")

    def entity(self, kind: Json, name_or_id: str) -> Json:
        """The entity of ``kind`` with this exact name (or id), in detail."""
        base = f"/api/v1/{kind['plural']}"
        if _is_uuid(name_or_id):
            return self.get(f"{base}/{name_or_id}")
        page = self.get(base, name=name_or_id, limit=200)
        for item in page["items"]:
            if item["name"] == name_or_id:
                return self.get(f"{base}/{item['id']}")
        raise ApiError(404, f"no {kind['name']} named {name_or_id!r} that you can see")

    def team_id(self, name_or_id: str) -> str:
        if _is_uuid(name_or_id):
            return name_or_id
        for team in self.get("/api/v1/teams"):
            if team["name"] == name_or_id:
                return str(team["id"])
        raise ApiError(404, f"no team named {name_or_id!r} that you belong to")


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def parse_value(text: str) -> Json:
    """``--set`` values: JSON when it parses (numbers, true, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_sets(pairs: list[str], *, nested: bool) -> dict[str, Any]:
    """``key=value`` (or ``task.field=value`` when ``nested``) into a dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(
                422, f"--set {pair!r}: expected {'task.field' if nested else 'field'}=value"
            )
        if nested:
            task, dot, field = key.partition(".")
            if not dot or not task or not field:
                raise ApiError(422, f"--set {pair!r}: expected task.field=value")
            out.setdefault(task, {})[field] = parse_value(value)
        else:
            out[key] = parse_value(value)
    return out
