"""The one request wrapper (``dagcore.http.endpoint``) and its per-endpoint options.

Driven with a stand-in authenticator, so the steps are seen without a database: each
interface (Tribune, Politburo) plugs its own authentication into the same steps.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory

from dagcore.http.endpoint import EndpointOptions, Endpoints, RequestContext
from dagcore.http.errors import MatrixError

factory = RequestFactory()
seen: list[str] = []


def _authenticator(ctx: RequestContext, options: EndpointOptions) -> None:
    required = options.auth == "required"
    seen.append(f"auth required={required} guests={options.allow_guest}")
    if ctx.request.META.get("HTTP_AUTHORIZATION") != "Bearer good":
        if required:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        return
    ctx.extra["who"] = "@alice:x"


endpoint = Endpoints(authenticator=_authenticator)


def _json(response: HttpResponse) -> tuple[int, Any]:
    return response.status_code, json.loads(response.content)


def test_a_view_gets_the_decoded_path_and_answers_json() -> None:
    @endpoint(auth="none")
    def view(ctx: RequestContext, room_id: str) -> dict[str, Any]:
        return {"room_id": room_id}

    assert _json(view(factory.get("/x"), room_id="%21a%3Ab")) == (200, {"room_id": "!a:b"})


def test_methods_not_listed_are_405_before_anything_else() -> None:
    seen.clear()

    @endpoint(methods=("GET",))
    def view(ctx: RequestContext) -> dict[str, Any]:
        return {}

    status, body = _json(view(factory.post("/x", data=b"{", content_type="application/json")))
    assert (status, body["errcode"]) == (405, "M_UNRECOGNIZED") and seen == []


def test_required_and_optional_authentication() -> None:
    @endpoint()
    def required(ctx: RequestContext) -> dict[str, Any]:
        return {"who": ctx.extra.get("who")}

    @endpoint(auth="optional", allow_guest=True)
    def optional(ctx: RequestContext) -> dict[str, Any]:
        return {"who": ctx.extra.get("who")}

    seen.clear()
    assert _json(required(factory.get("/x")))[1]["errcode"] == "M_MISSING_TOKEN"
    assert _json(required(factory.get("/x", HTTP_AUTHORIZATION="Bearer good"))) == (200, {"who": "@alice:x"})
    assert _json(optional(factory.get("/x"))) == (200, {"who": None})
    assert seen == ["auth required=True guests=False"] * 2 + ["auth required=False guests=True"]


def test_the_body_is_parsed_only_for_the_endpoints_body_methods() -> None:
    def body_of(ctx: RequestContext) -> dict[str, Any]:
        return ctx.json_object()

    json_body = endpoint(auth="none")(body_of)

    @endpoint(auth="none", body_methods=())
    def raw_body(ctx: RequestContext) -> dict[str, Any]:
        return {"raw": ctx.request.body.decode()}

    delete_body = endpoint(auth="none", body_methods=("DELETE",))(body_of)

    post = factory.post("/x", data=b'{"a": 1}', content_type="application/json")
    assert _json(json_body(post)) == (200, {"a": 1})
    assert _json(json_body(factory.post("/x", data=b"{", content_type="application/json")))[0] == 400
    unparsed = factory.post("/x", data=b"{", content_type="application/json")
    assert _json(raw_body(unparsed)) == (200, {"raw": "{"})
    delete = factory.delete("/x", data=b'{"auth": {}}', content_type="application/json")
    assert _json(delete_body(delete)) == (200, {"auth": {}})
    big = factory.post("/x", data=b'{"a": "' + b"x" * 100 + b'"}', content_type="application/json")
    assert _json(endpoint(auth="none", max_body=50)(body_of)(big))[1]["errcode"] == "M_TOO_LARGE"


def test_nul_in_the_path_or_the_query_is_refused_unless_the_endpoint_opts_out() -> None:
    def view(ctx: RequestContext, media_id: str) -> dict[str, Any]:
        return {"media_id": media_id}

    checked = endpoint(auth="none")(view)
    status, body = _json(checked(factory.get("/x"), media_id="abc%00"))
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM") and "NUL" in body["error"]
    assert _json(checked(factory.get("/x?filename=a%00b"), media_id="abc"))[0] == 400
    assert _json(endpoint(auth="none", reject_nul=False)(view)(factory.get("/x"), media_id="a%00"))[0] == 200


def test_a_streaming_answer_needs_an_endpoint_that_allows_it() -> None:
    def view(ctx: RequestContext) -> StreamingHttpResponse:
        return StreamingHttpResponse(iter([b"bytes"]))

    assert isinstance(endpoint(auth="none", streaming=True)(view)(factory.get("/x")), StreamingHttpResponse)
    status, body = _json(endpoint(auth="none")(view)(factory.get("/x")))
    assert (status, body["errcode"]) == (500, "M_UNKNOWN")


def test_async_views_take_the_same_steps() -> None:
    @endpoint(methods=("GET",), rate_limit=None)
    async def view(ctx: RequestContext, server_name: str) -> dict[str, Any]:
        return {"server_name": server_name, "who": ctx.extra.get("who")}

    ok = factory.get("/x", HTTP_AUTHORIZATION="Bearer good")
    answer = {"server_name": "a.b", "who": "@alice:x"}
    assert _json(asyncio.run(view(ok, server_name="a%2Eb"))) == (200, answer)
    assert _json(asyncio.run(view(factory.get("/x"), server_name="a")))[0] == 401
    assert _json(asyncio.run(view(ok, server_name="a%00")))[0] == 400
    assert _json(asyncio.run(view(factory.put("/x"), server_name="a")))[0] == 405


def test_a_deferred_authentication_must_be_done_by_the_view() -> None:
    @endpoint(deferred_auth=True)
    async def prepares(ctx: RequestContext) -> dict[str, Any]:
        await asyncio.to_thread(ctx.prepare)
        return {"who": ctx.extra.get("who")}

    @endpoint(deferred_auth=True)
    async def forgets(ctx: RequestContext) -> dict[str, Any]:
        return {"who": ctx.extra.get("who")}

    ok = factory.get("/x", HTTP_AUTHORIZATION="Bearer good")
    assert _json(asyncio.run(prepares(ok))) == (200, {"who": "@alice:x"})
    assert _json(asyncio.run(prepares(factory.get("/x"))))[0] == 401
    assert _json(asyncio.run(forgets(ok)))[0] == 500  # never answered unauthenticated
