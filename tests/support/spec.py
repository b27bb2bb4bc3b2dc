"""Validate our HTTP responses against the Matrix spec's own OpenAPI definitions.

The definitions are vendored in ``tests/matrix_spec`` (Apache-2.0). Each
operation is indexed by method and path template (``/rooms/{roomId}/send/...``);
``$ref``s between the YAML files are resolved with ``referencing``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parent.parent / "matrix_spec"
CS_DIR = SPEC_DIR / "client-server"


@functools.cache
def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _retrieve(uri: str) -> Resource:
    path = Path(uri.removeprefix("file://").split("#", 1)[0])
    if not path.exists() and path.is_relative_to(SPEC_DIR.parent) and not path.is_relative_to(SPEC_DIR):
        # The vendored copy drops upstream's ``data/api/`` level, so the spec's
        # ``../../event-schemas/...`` from ``client-server/`` lands one directory too high.
        path = SPEC_DIR / path.relative_to(SPEC_DIR.parent)
    return Resource.from_contents(_load_yaml(path), default_specification=DRAFT202012)


@functools.cache
def _registry() -> Registry:
    return Registry(retrieve=_retrieve)  # type: ignore[call-arg]


@functools.cache
def _operations() -> dict[tuple[str, str], tuple[Path, dict[str, Any]]]:
    ops: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
    for api_dir in (CS_DIR, SPEC_DIR / "server-server", SPEC_DIR / "push-gateway"):
        for path in sorted(api_dir.glob("*.yaml")):
            doc = _load_yaml(path)
            if not isinstance(doc, dict) or "paths" not in doc:
                continue
            for template, item in doc["paths"].items():
                for method, op in item.items():
                    if method in ("get", "put", "post", "delete"):
                        ops[(method.upper(), template)] = (path, op)
    return ops


def find_operation(method: str, template: str) -> tuple[Path, dict[str, Any]]:
    """``template`` as the spec writes it, relative to the API's base (e.g. ``/rooms/{roomId}/join``)."""
    try:
        return _operations()[(method.upper(), template)]
    except KeyError:
        raise AssertionError(f"the spec has no operation {method} {template}") from None


def response_schema(method: str, template: str, status: int) -> tuple[Path, dict[str, Any]] | None:
    path, op = find_operation(method, template)
    responses = op.get("responses", {})
    resp = responses.get(str(status))
    if resp is None:
        raise AssertionError(f"the spec lists no {status} response for {method} {template}")
    if "$ref" in resp:
        resp = _resolve_local(path, resp["$ref"])
    content = resp.get("content", {})
    json_content = content.get("application/json")
    if not json_content or "schema" not in json_content:
        return None
    schema = json_content["schema"]
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        # A reference into the same file (e.g. ``#/components/schemas/...``): resolve it
        # here, as the schema is validated detached from its document.
        schema = _resolve_local(path, ref)
    return path, schema


def _resolve_local(path: Path, ref: str) -> Any:
    target, _, pointer = ref.partition("#")
    doc = _load_yaml((path.parent / target).resolve()) if target else _load_yaml(path)
    for part in [p for p in pointer.split("/") if p]:
        doc = doc[part]
    return doc


def validate_response(method: str, template: str, status: int, body: Any) -> None:
    """Assert ``body`` matches the spec's schema for this operation and status."""
    found = response_schema(method, template, status)
    if found is None:
        return
    path, schema = found
    base_uri = path.resolve().as_uri()
    contents = {"$id": base_uri, **schema}
    doc = _load_yaml(path)
    if isinstance(doc, dict) and "components" in doc:
        # Local refs (``#/components/schemas/...``) point into the whole file, not the response schema.
        contents.setdefault("components", doc["components"])
    resource = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry = _registry().with_resource(base_uri, resource)
    validator = jsonschema.Draft202012Validator({"$ref": base_uri}, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5])
        raise AssertionError(f"{method} {template} {status} does not match the spec: {details}")


def validate_request(method: str, template: str, body: Any) -> None:
    """Assert a request ``body`` we sent (e.g. to a push gateway) matches the spec's request schema."""
    path, op = find_operation(method, template)
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    base_uri = path.resolve().as_uri()
    resource = Resource.from_contents({"$id": base_uri, **schema}, default_specification=DRAFT202012)
    validator = jsonschema.Draft202012Validator(
        {"$ref": base_uri}, registry=_registry().with_resource(base_uri, resource)
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5])
        raise AssertionError(f"{method} {template} request does not match the spec: {details}")


_TEMPLATE_PARAM = re.compile(r"\{[^}]+\}")


def operations_for(prefix_files: list[str]) -> list[tuple[str, str]]:
    """Every (method, template) defined in the given spec files (for coverage checks)."""
    return [(m, t) for (m, t), (p, _) in _operations().items() if p.name in prefix_files]
