"""The service's HTTP server: /healthz, /metrics, and platform routes added by adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

HealthCheck = Callable[[], Awaitable[dict[str, str]]]


class HttpServer:
    """A small aiohttp server; adapters may mount routes before start()."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        health: HealthCheck,
        metrics: Callable[[], str],
    ) -> None:
        self.host = host
        self.port = port
        self._health = health
        self._metrics = metrics
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics_view)
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        components = await self._health()
        healthy = all(v in ("ok", "connected") for v in components.values())
        body = {"status": "ok" if healthy else "unavailable", "components": components}
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics_view(self, _request: web.Request) -> web.Response:
        return web.Response(text=self._metrics(), content_type="text/plain", charset="utf-8")

    async def start(self) -> None:
        """Listen; with port 0 the chosen port is written back to `port`."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            # e.g. the port is taken: nothing is left half set up for the caller to stop.
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
