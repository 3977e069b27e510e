"""The images of a ``POST /v1/read`` request: a multipart form (field ``files``) or one raw
image body, refused (413 / 415 / 422) as soon as it passes a limit, before any decoding."""

from __future__ import annotations

from fastapi import Request
from starlette.formparsers import MultiPartException

from digitseq.apps.serve.errors import ApiError
from digitseq.apps.serve.settings import ServeSettings

MB = 1024 * 1024
RAW_TYPES = ("image/", "application/octet-stream")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body over the limit of {limit / MB:g} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body over the limit of {limit / MB:g} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def uploads_from_request(
    request: Request, s: ServeSettings
) -> list[tuple[str | None, bytes]]:
    """[(file name, bytes)] from a multipart form (field ``files``) or a raw image body."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    max_file = int(s.max_file_mb * MB)
    if media.startswith(RAW_TYPES):
        body = await read_body(request, min(max_file, int(s.max_body_mb * MB)))
        return [(None, body)]
    if media != "multipart/form-data":
        raise ApiError(
            415,
            "send images as multipart/form-data (field 'files') or one raw body with an "
            f"image/* content type, not {media or 'no content type'!r}",
        )
    body = await read_body(request, int(s.max_body_mb * MB))

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    # Without "app" in the scope starlette raises its parser errors instead of a bare 400.
    scope = {k: v for k, v in request.scope.items() if k != "app"}
    form_request = Request(scope, replay)
    try:
        form = await form_request.form(
            max_files=s.max_files, max_fields=s.max_files + 16, max_part_size=max_file
        )
    except MultiPartException as e:
        if "Too many" in e.message or "exceeded" in e.message:
            raise ApiError(413, f"too many files or fields: at most {s.max_files} files") from None
        raise ApiError(422, f"malformed multipart body: {e.message}") from None
    try:
        parts = form.getlist("files")
        if not parts:
            raise ApiError(422, "no images: send them as multipart field 'files'")
        if len(parts) > s.max_files:
            raise ApiError(413, f"{len(parts)} files: at most {s.max_files} per request")
        uploads = []
        for part in parts:
            if isinstance(part, str):  # a text field (a part without a filename) is no image
                raise ApiError(422, "field 'files' must hold file uploads, not text")
            data = await part.read(max_file + 1)
            if len(data) > max_file:
                raise ApiError(413, f"{part.filename!r} is over the limit of {s.max_file_mb:g} MB")
            uploads.append((part.filename, data))
        return uploads
    finally:
        await form.close()


def header_pixels(datas: list[bytes]) -> int:
    """Pixels the images claim in their headers (no decoding); unreadable ones count 0 and get
    their own error later."""
    import io

    from PIL import Image

    total = 0
    for data in datas:
        try:
            with Image.open(io.BytesIO(data)) as im:
                total += im.width * im.height
        except Exception:  # noqa: BLE001, S112 - an unreadable header is that file's error
            continue
    return total
