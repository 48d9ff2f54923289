"""Errors as OpenAI-style JSON bodies: {"error": {"message", "type", "param", "code"}}.

The official clients read this shape to raise their typed exceptions (NotFoundError, AuthenticationError...).
Messages leave the server without absolute paths (those under the knowledge base become relative to it,
any other keeps only its last part) and always as valid UTF-8.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from loracle.errors import AdapterError, LoracleError
from loracle.serve.catalog import InvalidAdapterIdError, UnknownAdapterError
from loracle.serve.disconnect import ClientDisconnected

#: an absolute path of two or more parts, at the start of the text or after a space, quote or bracket
_ABSOLUTE_PATH = re.compile(r"(?:(?<=^)|(?<=[\s'\"(\[=]))/(?:[^\s/'\"()\[\]:,;]+/)+([^\s/'\"()\[\]:,;]*)")


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None, param=None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param


def public_message(message: str, root: Path | None = None) -> str:
    """`message` as a client may see it: paths under `root` relative to it (`root` itself by its name), other
    absolute paths cut to their last part, and text that is not valid Unicode (lone surrogates) escaped."""
    for prefix in {str(root), str(root.resolve())} if root is not None else ():
        message = message.replace(prefix + "/", "").replace(prefix, root.name)
    message = _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "/", message)
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": public_message(message), "type": type, "param": param, "code": code}}


def error_response(status: int, message: str, type: str, code: str | None = None, param=None) -> JSONResponse:
    return JSONResponse(error_body(message, type, code, param), status_code=status)


def as_api_error(exc: LoracleError, param: str | None = None) -> ApiError:
    """Our library errors, as the status a client should see."""
    if isinstance(exc, UnknownAdapterError):
        return ApiError(404, str(exc), code="model_not_found", param=param)
    if isinstance(exc, InvalidAdapterIdError):
        return ApiError(400, str(exc), code="invalid_adapter_id", param=param)
    if isinstance(exc, AdapterError):
        return ApiError(422, str(exc), code="adapter_error", param=param)
    return ApiError(400, str(exc), param=param)


def kb_root(request: Request) -> Path | None:
    """The knowledge base the server serves, if any (error messages are made relative to it)."""
    kb = getattr(getattr(request.app.state, "loracle", None), "kb", None)
    return kb.root if kb is not None else None


def install_error_handlers(app: FastAPI) -> None:
    def respond(request: Request, api: ApiError, headers=None) -> JSONResponse:
        message = public_message(api.message, kb_root(request))
        body = error_body(message, api.type, api.code, api.param)
        return JSONResponse(body, status_code=api.status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(request, exc)

    @app.exception_handler(LoracleError)
    async def _loracle_error(request: Request, exc: LoracleError) -> JSONResponse:
        return respond(request, as_api_error(exc))

    @app.exception_handler(ClientDisconnected)
    async def _gone(_: Request, __: ClientDisconnected) -> Response:
        return Response(status_code=499)  # nobody reads it: the status nginx logs for "client closed request"

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return respond(request, ApiError(400, f"{param or 'request'}: {first.get('msg')}", param=param))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger(__name__).error("request failed", exc_info=exc)
        return respond(request, ApiError(500, f"internal error ({type(exc).__name__})", type="server_error"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code, "invalid_request_error")
        api = ApiError(exc.status_code, str(exc.detail), type=kind)
        return respond(request, api, headers=getattr(exc, "headers", None))
