"""The service's answers other than 200: ``ApiError`` and the handlers that turn every error
into ``{"detail": one line}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("digitseq.apps.serve.app")  # the service logs under one name


class ApiError(Exception):
    """An answer other than 200: status code and one line for the caller."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def install_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"detail": one line}``: no tracebacks, no 500 with internals."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        msgs = []
        for err in exc.errors()[:3]:
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            msgs.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(
            {"detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unexpected %s on %s: %s", type(exc).__name__, request.url.path, exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)
