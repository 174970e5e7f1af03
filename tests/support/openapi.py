"""Checks that ingest answers as its OpenAPI document says: a status documented for the route, with the
documented body. Used by the tests of the document and by every test client that should obey it."""

import re

import jsonschema_rs
from fastapi.testclient import TestClient


def documented_statuses(schema: dict) -> dict[tuple[str, str], set[int]]:
    return {
        (method.upper(), path): {int(code) for code in operation["responses"]}
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def response_schema(schema: dict, method: str, path: str, code: int) -> dict | None:
    """The documented JSON schema of an answer, resolvable on its own; None for a non-JSON answer."""
    content = schema["paths"][path][method.lower()]["responses"][str(code)].get("content", {})
    body = content.get("application/json", {}).get("schema")
    return None if body is None else {**body, "components": schema["components"]}


def route_of(app, method: str, path: str) -> str | None:
    """The documented path template that serves ``path``; None for what the document leaves out. (The one
    parameter in a path, a file's name, may hold slashes.)"""
    for template, operations in app.openapi()["paths"].items():
        pattern = re.sub(r"\\{[^}]+\\}", ".+", re.escape(template))
        if method.lower() in operations and re.fullmatch(pattern, path):
            return template
    return None


def check_documented(app, response) -> None:
    """That the answer's status is documented for its route, and its JSON body is the documented one."""
    method, path = response.request.method, response.request.url.path
    template = route_of(app, method, path)
    if template is None:
        return
    schema = app.openapi()
    documented = documented_statuses(schema)[(method, template)]
    assert response.status_code in documented, (
        f"{method} {path} answered {response.status_code}, documented {documented}"
    )
    body_schema = response_schema(schema, method, template, response.status_code)
    if body_schema is not None:
        response.read()
        jsonschema_rs.validate(body_schema, response.json())


def answers_as_documented(client: TestClient) -> TestClient:
    """The client, checking every answer it gets with check_documented."""
    client.event_hooks = {"request": [], "response": [lambda response: check_documented(client.app, response)]}
    return client
