"""The OpenAPI document as generated clients need it.

- Every operation has a stable ``operationId`` (``sites_create``, ``runs_cancel``,
  ``sites_action_login``, ``sites_run_install``): set on the route, else ``{tag}_{name}``.
- Every error answer has a typed body: ``ErrorBody`` (``{"detail": "..."}``), or FastAPI's
  ``HTTPValidationError`` for a 422.
- A run's values are documented as the server reads them: each task key and each field may
  be left out (it keeps the task's current value), and nothing else is accepted. The typed
  route of each operation (``POST /{plural}/{id}/operations/{name}/runs``) names that
  operation's own values model; the generic ``/operations/{id}/runs`` accepts any of them.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.catalog.registry import Catalog

Document = dict[str, Any]

ERROR_BODY: Document = {
    "title": "ErrorBody",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "title": "Detail", "description": "What went wrong, in words."}
    },
    "required": ["detail"],
}
# Answers any route may give, besides its own.
COMMON_ERRORS = {
    "401": "Not signed in, or the token is unknown, expired or revoked",
    "503": "The database or Redis does not answer; try again",
}
WRITE_ERRORS = {"403": "Your role in the owning team does not allow it"}
PATH_ERRORS = {"404": "Nothing of that id that you can see"}
BODY_ERRORS = {"400": "The body is not JSON"}
METHODS = ("get", "post", "put", "patch", "delete")


def operation_id(route: APIRoute) -> str:
    """For routes that set none: ``{first tag}_{endpoint name}``."""
    tag = str(route.tags[0]).replace("-", "_") if route.tags else ""
    return f"{tag}_{route.name}" if tag else route.name


def compose(app: FastAPI, catalog: Catalog) -> None:
    """Give ``app`` the document above, built once on first use."""

    def openapi() -> Document:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        _values(document, schemas, catalog)
        _catalogue_words(schemas, catalog)
        _updates(document, schemas)
        _errors(document, schemas)
        _close_pattern_maps(document)
        document["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A personal token: POST /api/v1/tokens or `aegir token create`.",
            },
            "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "aegir_session"},
        }
        document["security"] = [{"bearerAuth": []}, {"sessionCookie": []}]
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _values(document: Document, schemas: Document, catalog: Catalog) -> None:
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (catalog.values_model(kind.name, op), "validation")
        for kind in catalog.kinds.values()
        for op in kind.operations
    ]
    refs, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
    _, defs = _unique_titles(refs, definitions.get("$defs", {}))
    # A task's fields with no default are each run's own and required (the server does
    # not take them from the last run); the rest keep their current values when left out,
    # and a task with nothing required may be left out whole.
    composed = {model.__name__ for model, _mode in models}
    for name in composed:
        properties = defs[name].get("properties", {})
        tasks = [key for key, prop in properties.items() if defs[_ref_name(prop)].get("required")]
        defs[name] = _optional(defs[name]) | ({"required": tasks} if tasks else {})
    for name, schema in defs.items():
        schemas.setdefault(name, schema)
    # Every run route has its own body (below): the shared one is used by none.
    schemas.pop("RunCreate", None)
    for path in document["paths"].values():
        for method in METHODS:
            operation = path.get(method)
            body_name = operation and operation.pop("x-aegir-run-body", None)
            if not body_name:
                continue
            values_name = body_name.removesuffix("RunCreate") + "Values"
            needed = "required" in schemas[values_name]
            schemas[body_name] = {
                "title": body_name,
                "type": "object",
                "properties": {
                    "values": {
                        "$ref": f"#/components/schemas/{values_name}",
                        "description": "Values per task key, then per field; what is left out "
                        "keeps the task's current value.",
                    }
                },
                "additionalProperties": False,
                **({"required": ["values"]} if needed else {}),
            }
            content = operation["requestBody"]["content"]["application/json"]
            content["schema"] = {"$ref": f"#/components/schemas/{body_name}"}
            operation["requestBody"]["required"] = needed


def _catalogue_words(schemas: Document, catalog: Catalog) -> None:
    """A batch names a kind, an operation and a reference role as words: the catalogue's
    own (plugins included) are their enums. Which operation a kind has, and which values
    it takes, depend on the kind named: the server checks that (422 naming the field)."""
    kinds = catalog.kinds.values()
    words = {
        ("BatchCreate", "kind"): sorted(catalog.kinds),
        ("BatchCreate", "operation"): sorted({op for kind in kinds for op in kind.operations}),
        ("BatchFilter", "role"): sorted({role for kind in kinds for role in kind.references}),
    }
    for (model, field), enum in words.items():
        prop = schemas.get(model, {}).get("properties", {}).get(field)
        if prop is not None:
            prop["enum"] = enum


BOILERPLATE = {"app", "catalog", "builtin", "fields", "tasks", "types"}


def _unique_titles(refs: Any, defs: Document) -> tuple[Any, Document]:
    """Models of the same class name in two modules (a site's and a Kubernetes
    environment's ``DatabaseFields``) get pydantic's ``module__path__Name`` keys but the same
    title, and generators name classes by title: each gets a name of its own instead,
    ``SiteDatabaseFields``, from its module path."""
    renames = {}
    for key in defs:
        if "__" in key:
            *path, name = key.split("__")
            prefix = "".join(p.capitalize() for p in path if p not in BOILERPLATE)
            renames[key] = prefix.replace("_", "") + name
    if not renames:
        return refs, defs
    text = json.dumps({"refs": {str(k): v for k, v in refs.items()}, "defs": defs})
    for old, new in renames.items():
        text = text.replace(f'/{old}"', f'/{new}"')
    loaded = json.loads(text)
    out: Document = {}
    for key, schema in loaded["defs"].items():
        if key in renames:
            schema["title"] = renames[key]
        out[renames.get(key, key)] = schema
    return {key: loaded["refs"][str(key)] for key in refs}, out


def _updates(document: Document, schemas: Document) -> None:
    """Each kind's PATCH body as the server reads it: the kind's own name rule, its own
    fields (none required: the others keep their values), and only its reference roles."""
    for path in document["paths"].values():
        operation = path.get("patch")
        camel = operation and operation.pop("x-aegir-update-body", None)
        if not camel:
            continue
        create = schemas[f"{camel}Create"]["properties"]
        fields_ref = _ref_name(create["fields"])
        refs_ref = _ref_name(create["references"])
        changed_fields = f"{camel}FieldsChange"
        schemas[changed_fields] = {
            **_optional(schemas[fields_ref]),
            "title": changed_fields,
            "additionalProperties": False,
        }
        roles = schemas[refs_ref].get("properties", {})
        name = {k: v for k, v in create["name"].items() if k not in ("title", "default")}
        body = f"{camel}Update"
        schemas[body] = {
            "title": body,
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"anyOf": [name, {"type": "null"}], "description": "A new name."},
                "fields": {
                    "anyOf": [{"$ref": f"#/components/schemas/{changed_fields}"}, {"type": "null"}],
                    "description": "Fields to change; the others keep their values.",
                },
                "references": {
                    "anyOf": [
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                role: {"type": "string", "format": "uuid"} for role in roles
                            },
                        },
                        {"type": "null"},
                    ],
                    "description": "References to change, by role: the id of the entity.",
                },
            },
        }
        content = operation["requestBody"]["content"]["application/json"]
        content["schema"] = {"$ref": f"#/components/schemas/{body}"}


def _ref_name(schema: Document) -> str:
    """The component a property refers to (directly, or as the one member of allOf)."""
    ref = schema.get("$ref") or next(
        (item["$ref"] for item in schema.get("allOf", []) if "$ref" in item), ""
    )
    return str(ref).rsplit("/", 1)[-1]


def _close_pattern_maps(node: Any) -> None:
    """A ``dict[Name, Value]`` field: pydantic documents its values per key pattern, but
    leaves keys that do not match the pattern unconstrained; the server refuses them, so
    the document does too."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in node:
            node["additionalProperties"] = False
            names = node.setdefault("propertyNames", {})
            names.setdefault("pattern", next(iter(patterns)))
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


def _optional(schema: Document) -> Document:
    """``schema`` with no property required: the server fills in what a run leaves out."""
    out = copy.deepcopy(schema)
    out.pop("required", None)
    return out


def _errors(document: Document, schemas: Document) -> None:
    schemas["ErrorBody"] = ERROR_BODY
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path_name, path in document["paths"].items():
        for method in METHODS:
            operation = path.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            public = operation.get("security") == []
            extra = {} if public else dict(COMMON_ERRORS)
            if method != "get" and not public:
                extra.update(WRITE_ERRORS)
            if "{" in path_name:
                extra.update(PATH_ERRORS)
            if "requestBody" in operation:
                extra.update(BODY_ERRORS)
            for code, description in extra.items():
                responses.setdefault(code, {"description": description})
            if public:
                continue  # health answers its own bodies
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and code != "422":
                    response.setdefault("content", copy.deepcopy(error))
