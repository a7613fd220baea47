"""Request and response models, and the OpenAPI 3.1 documents generated from them.

A service declares its routes in a :class:`Routes` table next to the handlers::

    routes = Routes(tags=("ads",))

    @routes.post("/admin/v1/ads", summary="Create a creative", body=NewAd,
                 replies={201: Ad}, auth=USER, errors={403: "Role not allowed"})
    async def create_ad(request: web.Request) -> web.Response:
        claims = await require_role(request, ADMIN)
        new = await parse_body(request, NewAd)
        ...

``routes.mount(app)`` adds them to the router and to the app's route list, from which
:func:`add_openapi` serves the document. Handlers parse for themselves, after they
authenticate (a caller without a token gets 401, not a list of what is wrong with its
body). A body or query string that does not fit its model is 422 ``invalid_request``
listing the ``fields`` at fault (``{"path": "a.b[0]", "message": ...}``); a body that is
not a JSON object stays 400 ``invalid_json`` and a too large one 413.

Models are pydantic v2: bodies are strict (a JSON ``"5"`` is not an integer, ``true`` is
not a number), query strings lax (``?limit=20`` is the integer 20).
"""

from __future__ import annotations

import dataclasses
import http
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import JsonSchemaMode, SkipJsonSchema, models_json_schema
from pydantic_core import ErrorDetails

from runtime.errors import ApiError, BadRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=BaseModel)
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

REF_TEMPLATE = "#/components/schemas/{model}"
MAX_FIELD_ERRORS = 20
_PATH_PARAM_RE = re.compile(r"\{(\w+)(?::[^}]*)?\}")

# ------------------------------------------------------------------ models

#: Reply fields written as today's strings (``str(uuid)``, ``datetime.isoformat()``),
#: documented with their format.
UuidStr = typing.Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]
DateTimeStr = typing.Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
DateStr = typing.Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]


class BodyModel(BaseModel):
    """A JSON request body: strict types, unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class QueryModel(BaseModel):
    """A query string: every value arrives as text, so types are coerced (lax)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ReplyModel(BaseModel):
    """A JSON response body. Every field is always written, so all are ``required``."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)


def omitted_when_none(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a reply field left out when None (``SkipJsonSchema[None]``):
    documented as optional, with no null default."""
    schema.pop("default", None)


class FieldError(ReplyModel):
    """One field that failed validation."""

    path: str = Field(description="Where: `name`, `a.b`, `items[0]`; empty for the whole body")
    message: str


class ErrorDetail(ReplyModel):
    """What went wrong: a stable machine code and a human message."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    code: str = Field(description="Stable machine-readable code, e.g. `invalid_request`")
    message: str
    request_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The request id to quote to support",
        json_schema_extra=omitted_when_none,
    )
    fields: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None,
        description="Validation failures (422 `invalid_request`)",
        json_schema_extra=omitted_when_none,
    )


class Error(ReplyModel):
    """Every error response has this shape."""

    error: ErrorDetail


# ------------------------------------------------------------------ parsing


class InvalidRequest(ApiError):
    """422: the body or query string does not fit its model; ``fields`` says where."""

    status, code, message = 422, "invalid_request", "Invalid request"


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("a", "b", 0)`` -> ``"a.b[0]"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: ErrorDetails) -> str:
    return err["msg"].removeprefix("Value error, ")


def invalid_request(errors: Sequence[ErrorDetails], where: str) -> InvalidRequest:
    """The 422 for pydantic's errors (never echoing the input: it may be a password)."""
    fields = [
        {"path": field_path(tuple(e["loc"])), "message": _message(e)}
        for e in errors[:MAX_FIELD_ERRORS]
    ]
    first = fields[0] if fields else {"path": "", "message": "invalid"}
    lead = f"'{first['path']}': " if first["path"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidRequest(
        f"Invalid {where}: {lead}{first['message']}{more}", details={"fields": fields}
    )


def _validation_errors(exc: ValidationError) -> list[ErrorDetails]:
    return exc.errors(include_url=False, include_input=False, include_context=False)


async def parse_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """The JSON body as ``model``: 400 ``invalid_json`` unless a JSON object (or absent
    when ``optional``: then read as ``{}``), 413 when too large, 422 when a field does
    not fit."""
    if request.content_length == 0 or not request.can_read_body:
        if not optional:
            raise BadRequest("A JSON object body is required", code="invalid_json")
        raw = b"{}"
    else:
        raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest("The body is not valid JSON", code="invalid_json") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in errors):
            raise BadRequest("The body must be a JSON object", code="invalid_json") from None
        raise invalid_request(errors, "body") from None


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) in (list, tuple, set, frozenset)


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as ``model`` (repeated keys for list fields); 422 when a value
    does not fit."""
    query = request.query
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in query:
            data[key] = query.getall(key) if _is_list(info.annotation) else query[key]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(_validation_errors(exc), "query") from None


# ------------------------------------------------------------------ route table


@dataclass(frozen=True, slots=True)
class Content:
    """A non-JSON response: its media types and (optional) schema."""

    description: str
    media_types: tuple[str, ...]
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PathParam:
    """How a ``{name}`` of the path is documented (every one is a required string)."""

    description: str
    format: str | None = None


@dataclass(frozen=True, slots=True)
class Param:
    """A documented query or header parameter that no model parses (a credential such
    as a playback token, whose absence is a 401 of its own; or ``Range``)."""

    name: str
    location: Literal["query", "header"]
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


Reply = type[BaseModel] | Content | None


class RouteSpec(TypedDict, total=False):
    """What a route declares beyond its method and path (see :meth:`Routes.route`)."""

    summary: typing.Required[str]
    replies: typing.Required[Mapping[int, Reply]]
    description: str
    body: type[BodyModel]
    body_optional: bool
    query: type[QueryModel]
    auth: tuple[str, ...]
    auth_optional: bool
    errors: Mapping[int, str]
    path_params: Mapping[str, PathParam]
    params: tuple[Param, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRoute:
    """One documented route: the handler plus what the OpenAPI document says of it.

    ``auth`` names security schemes, any one of which is enough (empty: public);
    ``auth_optional`` documents that the route also works without any. ``errors`` maps
    further statuses to what they mean; 400/413/422 for bodies and queries and 401 for
    authenticated routes are added by the document builder. ``params`` documents query
    or header parameters no model parses.
    """

    method: Method
    path: str
    handler: Handler
    summary: str
    replies: Mapping[int, Reply]
    description: str = ""
    body: type[BodyModel] | None = None
    body_optional: bool = False
    query: type[QueryModel] | None = None
    auth: tuple[str, ...] = ()
    auth_optional: bool = False
    errors: Mapping[int, str] = field(default_factory=dict)
    path_params: Mapping[str, PathParam] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def doc_path(self) -> str:
        """The path in OpenAPI's template syntax (no aiohttp regex)."""
        return _PATH_PARAM_RE.sub(r"{\1}", self.path)


api_routes_key = web.AppKey("api_routes", list[ApiRoute])


class Routes:
    """A table of documented routes, filled by decorators next to the handlers."""

    def __init__(self, *, tags: tuple[str, ...] = ()) -> None:
        self.tags = tags
        self._routes: list[ApiRoute] = []

    def __iter__(self) -> Iterator[ApiRoute]:
        return iter(self._routes)

    def route(self, method: Method, path: str, **spec: Unpack[RouteSpec]) -> Callable[[H], H]:
        """Declare ``handler`` for ``method path``; the handler itself is unchanged."""

        def register(handler: H) -> H:
            route = ApiRoute(method=method, path=path, handler=handler, **spec)
            if "tags" not in spec:
                route = dataclasses.replace(route, tags=self.tags)
            self._routes.append(route)
            return handler

        return register

    def get(self, path: str, **spec: Unpack[RouteSpec]) -> Callable[[H], H]:
        return self.route("GET", path, **spec)

    def post(self, path: str, **spec: Unpack[RouteSpec]) -> Callable[[H], H]:
        return self.route("POST", path, **spec)

    def put(self, path: str, **spec: Unpack[RouteSpec]) -> Callable[[H], H]:
        return self.route("PUT", path, **spec)

    def patch(self, path: str, **spec: Unpack[RouteSpec]) -> Callable[[H], H]:
        return self.route("PATCH", path, **spec)

    def delete(self, path: str, **spec: Unpack[RouteSpec]) -> Callable[[H], H]:
        return self.route("DELETE", path, **spec)

    def mount(self, app: web.Application) -> None:
        """Add the routes to ``app`` in declaration order (GET also answers HEAD)."""
        mounted = _route_list(app)
        for r in self._routes:
            if r.method == "GET":
                app.router.add_get(r.path, r.handler)
            else:
                app.router.add_route(r.method, r.path, r.handler)
            mounted.append(r)


def _route_list(app: web.Application) -> list[ApiRoute]:
    if api_routes_key not in app:
        app[api_routes_key] = []
    return app[api_routes_key]


# ------------------------------------------------------------------ the document


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="Error")}}},
    }


def _reply_object(status: int, reply: Reply, refs: Mapping[type[BaseModel], Any]) -> Any:
    if reply is None:
        return {"description": http.HTTPStatus(status).phrase}
    if isinstance(reply, Content):
        media: dict[str, Any] = {t: {} for t in reply.media_types}
        if reply.schema is not None:
            media = {t: {"schema": dict(reply.schema)} for t in reply.media_types}
        out: dict[str, Any] = {"description": reply.description, "content": media}
        if reply.headers:
            out["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in reply.headers.items()
            }
        return out
    doc = (reply.__doc__ or "").strip().split("\n", 1)[0] or http.HTTPStatus(status).phrase
    return {"description": doc, "content": {"application/json": {"schema": refs[reply]}}}


def _parameters(route: ApiRoute, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _PATH_PARAM_RE.findall(route.path):
        spec = route.path_params.get(name)
        schema: dict[str, Any] = {"type": "string"}
        if spec is not None and spec.format:
            schema["format"] = spec.format
        param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
        if spec is not None:
            param["description"] = spec.description
        params.append(param)
    for extra in route.params:
        params.append(
            {
                "name": extra.name,
                "in": extra.location,
                "required": extra.required,
                "description": extra.description,
                "schema": dict(extra.schema),
            }
        )
    if route.query is not None:
        qs = route.query.model_json_schema(mode="validation", ref_template=REF_TEMPLATE)
        schemas.update(qs.get("$defs", {}))
        required = set(qs.get("required", ()))
        for name, prop in qs.get("properties", {}).items():
            prop = dict(prop)
            param = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop.pop("description")
            prop.pop("title", None)
            param["schema"] = _not_null(prop)
            params.append(param)
    return params


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is text, never JSON null: ``X | None = None`` is documented as X."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return schema
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    if out.get("default", 0) is None:
        del out["default"]
    if len(kept) == 1:
        return {**kept[0], **out}
    return {**out, "anyOf": kept}


def openapi_document(
    routes: Sequence[ApiRoute],
    *,
    title: str,
    version: str,
    description: str,
    security_schemes: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``: the request models' validation schemas,
    the reply models' serialization schemas, one ``Error`` schema for every error."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Error, "serialization")]
    for r in routes:
        if r.body is not None:
            wanted.append((r.body, "validation"))
        wanted += [(m, "serialization") for m in r.replies.values() if isinstance(m, type)]
    keyed, top = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    body_refs: dict[Any, Any] = {m: s for (m, mode), s in keyed.items() if mode == "validation"}
    reply_refs: dict[Any, Any] = {m: s for (m, mode), s in keyed.items() if mode == "serialization"}

    paths: dict[str, dict[str, Any]] = {}
    templates: dict[str, str] = {}  # OpenAPI: /a/{x} and /a/{y} are the same path
    operation_ids: set[str] = set()
    used_schemes: set[str] = set()
    for r in routes:
        op_id = r.handler.__name__
        if op_id in operation_ids:
            raise ValueError(f"two routes share the operationId {op_id!r}")
        operation_ids.add(op_id)
        shape = _PATH_PARAM_RE.sub("{}", r.doc_path)
        if templates.setdefault(shape, r.doc_path) != r.doc_path:
            raise ValueError(f"{r.doc_path} and {templates[shape]} differ only in names")
        op: dict[str, Any] = {"operationId": op_id, "summary": r.summary}
        if r.description:
            op["description"] = r.description
        if r.tags:
            op["tags"] = list(r.tags)
        params = _parameters(r, schemas)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": not r.body_optional,
                "content": {"application/json": {"schema": body_refs[r.body]}},
            }
        responses: dict[str, Any] = {
            str(status): _reply_object(status, reply, reply_refs)
            for status, reply in r.replies.items()
        }
        errors: dict[int, str] = {}
        if r.body is not None:
            errors[400] = "The body is not a JSON object (`invalid_json`)"
            errors[413] = "The body is too large (`payload_too_large`)"
        if r.body is not None or r.query is not None:
            errors[422] = "A field does not fit the schema (`invalid_request`, with `fields`)"
        if r.auth:
            errors[401] = "No, expired or revoked token"
        errors.update(r.errors)
        for status in sorted(errors):
            responses[str(status)] = _error_response(errors[status])
        responses["default"] = _error_response("Any other error, e.g. 503 when a backend is down")
        op["responses"] = responses
        if r.auth:
            unknown = set(r.auth) - set(security_schemes)
            if unknown:
                raise ValueError(f"{r.method} {r.path}: unknown security schemes {unknown}")
            used_schemes.update(r.auth)
            op["security"] = [{name: []} for name in r.auth] + ([{}] if r.auth_optional else [])
        paths.setdefault(r.doc_path, {})[r.method.lower()] = op

    components: dict[str, Any] = {"schemas": dict(sorted(schemas.items()))}
    if used_schemes:
        components["securitySchemes"] = {
            name: dict(security_schemes[name]) for name in sorted(used_schemes)
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": components,
    }


def add_openapi(
    app: web.Application,
    path: str,
    *,
    title: str,
    version: str,
    description: str,
    security_schemes: Mapping[str, Mapping[str, Any]],
) -> None:
    """Serve the document of the routes mounted on ``app`` at ``GET path`` (built on the
    first request, once per process)."""
    _route_list(app)
    built: list[bytes] = []

    async def openapi(request: web.Request) -> web.Response:
        if not built:
            mounted: list[ApiRoute] = request.app[api_routes_key]
            doc = openapi_document(
                mounted,
                title=title,
                version=version,
                description=description,
                security_schemes=security_schemes,
            )
            built.append(orjson.dumps(doc))
        return web.Response(
            body=built[0],
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    app.router.add_get(path, openapi)
