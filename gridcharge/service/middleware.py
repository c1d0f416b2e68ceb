"""ASGI middleware of the service: the request body limit (413 before any parsing)."""

from __future__ import annotations

from .problems import Problem, field_error, problem_response


class BodyLimit:
    """Answer 413 to a request whose body is over ``max_bytes``: by its Content-Length at once, or while it is
    being read (chunked) — then the body is buffered up to the limit and handed on whole."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
        if length is not None and length < 0:
            return await self._reject(scope, send, 400, "Bad Request", "Content-Length is not a whole number")
        if length is not None and length > self.max_bytes:
            return await self._too_large(scope, send, length)
        if length is not None:
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(scope, send, size)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, send, size):
        return await self._reject(scope, send, 413, "Content Too Large",
                                  f"request body of {size} bytes (at least) is over the limit of {self.max_bytes} "
                                  f"bytes", [field_error("body", f"{size} bytes", f"at most {self.max_bytes} bytes")])

    async def _reject(self, scope, send, status, title, detail, errors=None):
        response = problem_response(scope.get("path", ""), Problem(status, title, detail, errors))
        await response(scope, _empty_receive, send)


async def _empty_receive():
    return {"type": "http.disconnect"}


__all__ = ["BodyLimit"]
