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


def test_every_sample_is_labelled_with_the_replica() -> None:
    from bot.compose import labelled

    text = '# HELP x_total Things.\n# TYPE x_total counter\nx_total{status="ok"} 3\ny 2\n'
    assert labelled(text, 'web-1:7:a"b') == (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{replica="web-1:7:a\\"b",status="ok"} 3\n'
        'y{replica="web-1:7:a\\"b"} 2\n'
    )
