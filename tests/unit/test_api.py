"""runtime.api: request models (400/413/422 with field paths) and the OpenAPI builder."""

from __future__ import annotations

from typing import Annotated

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate
from pydantic import Field

from runtime.api import (
    BodyModel,
    Content,
    Param,
    PathParam,
    QueryModel,
    ReplyModel,
    Routes,
    api_routes_key,
    field_path,
    openapi_document,
    parse_body,
    parse_query,
)
from runtime.web import error_mappers_key, error_middleware, json_response

SCHEMES = {"bearer": {"type": "http", "scheme": "bearer"}}


class Item(BodyModel):
    sku: Annotated[str, Field(min_length=1)]
    count: Annotated[int, Field(ge=1)] = 1


class Order(BodyModel):
    """An order."""

    name: str
    items: list[Item] = Field(max_length=3)


class Note(BodyModel):
    text: str = "none"


class Search(QueryModel):
    limit: int = 20
    tag: list[str] = Field(default_factory=list)


class Echo(ReplyModel):
    """What was received."""

    name: str
    skus: list[str]


routes = Routes(tags=("test",))


@routes.post(
    "/orders/{shop}",
    summary="Place an order",
    body=Order,
    replies={201: Echo},
    auth=("bearer",),
    path_params={"shop": PathParam("The shop", "uuid")},
)
async def place(request: web.Request) -> web.Response:
    order = await parse_body(request, Order)
    return json_response(Echo(name=order.name, skus=[i.sku for i in order.items]), status=201)


@routes.post(
    "/optional", summary="Optional body", body=Note, body_optional=True, replies={200: None}
)
async def optional(request: web.Request) -> web.Response:
    note = await parse_body(request, Note, optional=True)
    return json_response({"text": note.text})


@routes.post(
    "/item", summary="Optional, required field", body=Item, body_optional=True, replies={200: None}
)
async def optional_item(request: web.Request) -> web.Response:
    item = await parse_body(request, Item, optional=True)
    return json_response({"count": item.count})


@routes.get("/search", summary="Search", query=Search, replies={200: None})
async def search(request: web.Request) -> web.Response:
    q = parse_query(request, Search)
    return json_response({"limit": q.limit, "tag": q.tag})


@routes.get(
    "/files/{name}.txt",
    summary="A file",
    replies={200: Content("Text", ("text/plain",), {"type": "string"})},
    params=(Param("t", "query", "A token", required=True),),
)
async def text_file(request: web.Request) -> web.Response:
    return web.Response(text=request.match_info["name"])


@pytest.fixture
async def client(aiohttp_client) -> TestClient:
    app = web.Application(middlewares=[error_middleware], client_max_size=1024)
    app[error_mappers_key] = []
    routes.mount(app)
    return await aiohttp_client(app)


def test_field_path() -> None:
    assert field_path(("a", "b", 0, "c")) == "a.b[0].c"
    assert field_path((0,)) == "[0]"
    assert field_path(()) == ""


async def test_good_body_parses(client: TestClient) -> None:
    resp = await client.post("/orders/x", json={"name": "n", "items": [{"sku": "a"}]})
    assert resp.status == 201
    assert await resp.json() == {"name": "n", "skus": ["a"]}


async def test_bad_fields_are_422_with_paths(client: TestClient) -> None:
    body = {"name": 5, "items": [{"sku": "a"}, {"sku": "", "count": "2"}]}
    resp = await client.post("/orders/x", json=body)
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_request"
    assert [f["path"] for f in err["fields"]] == ["name", "items[1].sku", "items[1].count"]
    assert all(f["message"] for f in err["fields"])
    assert err["message"].startswith("Invalid body: 'name': ")
    assert "(and 2 more)" in err["message"]


async def test_missing_field_and_too_many_items(client: TestClient) -> None:
    resp = await client.post("/orders/x", json={"items": [{"sku": "a"}] * 4})
    assert resp.status == 422
    paths = [f["path"] for f in (await resp.json())["error"]["fields"]]
    assert paths == ["name", "items"]


async def test_bodies_are_strict(client: TestClient) -> None:
    for count in ("3", 3.0, True):
        resp = await client.post(
            "/orders/x", json={"name": "n", "items": [{"sku": "a", "count": count}]}
        )
        assert resp.status == 422, count


async def test_not_a_json_object_stays_400(client: TestClient) -> None:
    for raw in (b"{nope", b"[1, 2]", b'"text"', b""):
        resp = await client.post(
            "/orders/x", data=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400, raw
        assert (await resp.json())["error"]["code"] == "invalid_json"


async def test_too_large_is_413(client: TestClient) -> None:
    resp = await client.post("/orders/x", json={"name": "x" * 2000, "items": []})
    assert resp.status == 413


async def test_input_is_never_echoed(client: TestClient) -> None:
    resp = await client.post(
        "/orders/x", json={"name": "n", "items": [{"sku": "hunter2-secret", "count": 0}]}
    )
    assert resp.status == 422
    assert "hunter2-secret" not in await resp.text()


async def test_optional_body(client: TestClient) -> None:
    resp = await client.post("/optional")
    assert (await resp.json()) == {"text": "none"}
    resp = await client.post("/optional", json={"text": "hi"})
    assert (await resp.json()) == {"text": "hi"}
    resp = await client.post("/optional", json={"text": 1})
    assert resp.status == 422
    # an absent optional body is read as {}: its required fields are still required
    resp = await client.post("/item")
    assert resp.status == 422
    assert (await resp.json())["error"]["fields"][0]["path"] == "sku"


async def test_query_is_coerced_and_checked(client: TestClient) -> None:
    resp = await client.get("/search?limit=5&tag=a&tag=b")
    assert await resp.json() == {"limit": 5, "tag": ["a", "b"]}
    resp = await client.get("/search")
    assert await resp.json() == {"limit": 20, "tag": []}
    resp = await client.get("/search?limit=abc")
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_request"
    assert err["fields"][0]["path"] == "limit"
    assert err["message"].startswith("Invalid query: 'limit': ")


def _doc(table: Routes) -> dict:
    return openapi_document(
        list(table), title="t", version="1", description="d", security_schemes=SCHEMES
    )


def test_document_is_valid_openapi_31() -> None:
    doc = _doc(routes)
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_document_declares_parameters_bodies_and_errors() -> None:
    doc = _doc(routes)
    place_op = doc["paths"]["/orders/{shop}"]["post"]
    assert place_op["operationId"] == "place"
    assert place_op["parameters"] == [
        {
            "name": "shop",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
            "description": "The shop",
        }
    ]
    assert place_op["requestBody"]["required"] is True
    assert place_op["security"] == [{"bearer": []}]
    assert {"201", "400", "401", "413", "422", "default"} <= set(place_op["responses"])
    error_ref = {"$ref": "#/components/schemas/Error"}
    assert place_op["responses"]["422"]["content"]["application/json"]["schema"] == error_ref
    schemas = doc["components"]["schemas"]
    assert set(schemas["Order"]["required"]) == {"name", "items"}
    assert set(schemas["Echo"]["required"]) == {"name", "skus"}
    assert schemas["Error"]["required"] == ["error"]
    assert doc["paths"]["/optional"]["post"]["requestBody"]["required"] is False

    search_params = doc["paths"]["/search"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in search_params] == [
        ("limit", "query", False),
        ("tag", "query", False),
    ]
    assert search_params[0]["schema"]["type"] == "integer"
    assert "422" in doc["paths"]["/search"]["get"]["responses"]

    file_op = doc["paths"]["/files/{name}.txt"]["get"]
    assert [p["name"] for p in file_op["parameters"]] == ["name", "t"]
    assert set(file_op["responses"]["200"]["content"]) == {"text/plain"}
    assert "422" not in file_op["responses"]


def test_document_refuses_ambiguous_routes() -> None:
    async def one(request: web.Request) -> web.Response:
        return web.Response()

    async def two(request: web.Request) -> web.Response:
        return web.Response()

    same_id = Routes()
    same_id.get("/a", summary="a", replies={200: None})(one)
    same_id.get("/b", summary="b", replies={200: None})(one)
    with pytest.raises(ValueError, match="operationId"):
        _doc(same_id)

    same_path = Routes()
    same_path.post("/p/{movie_id}", summary="a", replies={200: None})(one)
    same_path.delete("/p/{session_id}", summary="b", replies={200: None})(two)
    with pytest.raises(ValueError, match="differ only in names"):
        _doc(same_path)

    unknown = Routes()
    unknown.get("/x", summary="x", replies={200: None}, auth=("nope",))(one)
    with pytest.raises(ValueError, match="unknown security"):
        _doc(unknown)


def test_mount_records_routes_in_order() -> None:
    app = web.Application()
    routes.mount(app)
    assert [r.handler for r in app[api_routes_key]] == [
        place,
        optional,
        optional_item,
        search,
        text_file,
    ]
    methods = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert ("HEAD", "/search") in methods  # GET routes answer HEAD, as add_get does
