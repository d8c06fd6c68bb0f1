from __future__ import annotations

import aiohttp

from bot.http import HttpServer


async def test_healthz_and_metrics() -> None:
    state = {"store": "unavailable"}

    async def health() -> dict[str, str]:
        return dict(state)

    server = HttpServer(host="127.0.0.1", port=0, health=health, metrics=lambda: "x_total 1\n")
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 503
                assert await r.json() == {"status": "unavailable", "components": state}
            state.update(store="ok", slack="connected")
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                body = await r.json()
                assert body["components"] == {"store": "ok", "slack": "connected"}
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200 and await r.text() == "x_total 1\n"
    finally:
        await server.stop()
