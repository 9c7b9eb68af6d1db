"""The door every HTTP and gRPC request passes first: its token, its scope, its body's size.

One `Door` per replica that answers clients (the front ingress and every model replica). It
holds the token table and refreshes it in the background (`cluster.serve._auth`), so a check
costs a dict look-up; and it reads a body only after the token passed, refusing one over the
limit by its Content-Length or while streaming.
"""

from __future__ import annotations

import asyncio
import logging

from appliance.store import utcnow
from cluster.serve._auth import TokenPoller, TokenTable, token_hash_of
from cluster.serve._oip_reply import Reply, error

logger = logging.getLogger("ray.serve")


class BodyTooLarge(Exception):
    """The request body is larger than the door lets in."""


class Door:
    """Token checks and body limits for one replica.

    Args:
        settings: ``db_url`` (the token store), ``max_body_bytes`` and ``token_refresh_s``
            (see `cluster.serve._ingress.ingress_settings`).
    """

    def __init__(self, settings: dict) -> None:
        self.max_body = int(settings["max_body_bytes"])
        self._refresh_s = float(settings["token_refresh_s"])
        self._poller = TokenPoller(settings["db_url"])
        self.tokens = TokenTable()
        try:
            self.tokens = self._poller.poll(self.tokens) or self.tokens
        except Exception:
            # Not fatal: requests get 503 until the store answers; the refresher keeps trying.
            logger.warning("could not load the token set at start", exc_info=True)
        self._refresher: asyncio.Task | None = None
        self._failures = 0

    @property
    def loaded(self) -> bool:
        return self.tokens.loaded

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        while True:
            try:
                table = await asyncio.to_thread(self._poller.poll, self.tokens)
            except Exception as exc:
                self._failures += 1
                if self._failures & (self._failures - 1) == 0:  # 1, 2, 4, ...
                    logger.warning("token set refresh failed %d time(s): %r",
                                   self._failures, exc)
            else:
                self._failures = 0
                if table is not None:
                    self.tokens = table
            await asyncio.sleep(self._refresh_s)

    def denied(self, authorization: str | None, scope: str,
               headers: dict[str, str] | None = None) -> Reply | None:
        """None when the bearer token in `authorization` holds `scope`; else the refusal.

        Args:
            authorization: the ``Authorization`` header's value (or None).
            scope: what the route needs: ``infer``, ``feedback`` or ``admin``.
            headers: extra headers for a refusal (default none).
        """
        self._ensure_refresher()
        denial = self.tokens.check(token_hash_of(authorization), scope, utcnow())
        if denial is None:
            return None
        extra = dict(headers or {})
        if denial.status == 401:
            extra["WWW-Authenticate"] = "Bearer"
        return error(denial.status, denial.message, extra or None)

    async def read_body(self, request) -> bytes:
        """The body of a Starlette `request`; `BodyTooLarge` before or while reading it."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(size)
            chunks.append(chunk)
        return b"".join(chunks)

    def too_large(self, headers: dict[str, str] | None = None) -> Reply:
        return error(413, f"the request body is larger than the limit of {self.max_body} "
                          "bytes (serve_max_body_bytes); send fewer rows per request", headers)
