"""Errors as OpenAI-style JSON bodies: {"error": {"message", "type", "param", "code"}}.

The official clients read this shape to raise their typed exceptions (NotFoundError, AuthenticationError...).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loracle.errors import AdapterError, LoracleError
from loracle.serve.catalog import InvalidAdapterIdError, UnknownAdapterError


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None, param=None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.param)

    @app.exception_handler(LoracleError)
    async def _loracle_error(_: Request, exc: LoracleError) -> JSONResponse:
        api = as_api_error(exc)
        return error_response(api.status, api.message, api.type, api.code, api.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return error_response(400, f"{param or 'request'}: {first.get('msg')}", "invalid_request_error", None, param)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logging.getLogger(__name__).error("request failed", exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__})", "server_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code, "invalid_request_error")
        return JSONResponse(
            error_body(str(exc.detail), kind), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )
