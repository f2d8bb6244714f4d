# Tests of mysqlpool_proxy.http: the real HTTP server on 127.0.0.1:0 (or a
# Unix socket) in front of a Proxy object that is never started, hit with a
# raw asyncio client (exact bytes, partial requests, idle connections) and
# with urllib from a worker thread (what the Docker HEALTHCHECK uses).
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mysqlpool_proxy.config import ListenAddress, load_config
from mysqlpool_proxy.ops import http
from mysqlpool_proxy.ops.http import start_http_server, stop_http_server
from mysqlpool_proxy.proxy.health import READY
from mysqlpool_proxy.proxy.proxy import Proxy, ProxyState
from tests.fakes import ReadinessSet
from tests.support.waiting import wait_until_async

ENV = {"MYSQLPOOL_USERS_0_NAME": "app", "MYSQLPOOL_USERS_0_PASSWORD": "pw"}
TEST_TIMEOUT = 30.0


def run(coro_fn, *args):
    """Run an async test body on a fresh loop, bounded."""
    async def bounded():
        return await asyncio.wait_for(coro_fn(*args), TEST_TIMEOUT)
    return asyncio.run(bounded())


class Endpoint:
    """A Proxy object (not started) and its HTTP server, inside a running loop."""

    def __init__(self, proxy: Proxy, server: asyncio.AbstractServer):
        self.proxy = proxy
        self.server = server
        self.port = server.sockets[0].getsockname()[1]

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            return parse_response(await asyncio.wait_for(reader.read(), 10))
        finally:
            writer.close()

    async def get(self, path: str, method: str = "GET", headers: str = "") -> tuple[int, dict[str, str], bytes]:
        return await self.request(f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode())


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


async def started(metrics_path: str = "/metrics") -> Endpoint:
    proxy = Proxy(load_config(None, environ=ENV))
    server = await start_http_server(proxy, "127.0.0.1:0", metrics_path)
    return Endpoint(proxy, server)


class ServedConnections:
    """The connections of the HTTP servers started from now on: open now, and finished (HttpEndpoint wrapped)."""

    def __init__(self, monkeypatch):
        self.endpoints: list[http.HttpEndpoint] = []
        self.finished = 0
        counter = self

        class Counted(http.HttpEndpoint):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                counter.endpoints.append(self)

            async def handle(self, reader, writer):
                try:
                    await super().handle(reader, writer)
                finally:
                    counter.finished += 1

        monkeypatch.setattr(http, "HttpEndpoint", Counted)

    @property
    def open(self) -> int:
        return sum(e.open_connections for e in self.endpoints)


def with_endpoint(body, metrics_path: str = "/metrics"):
    async def main():
        endpoint = await started(metrics_path)
        try:
            return await body(endpoint)
        finally:
            await stop_http_server(endpoint.server)
    return run(main)


# -- routes -----------------------------------------------------------------------------

def test_healthz_says_ok():
    async def body(ep: Endpoint):
        status, headers, text = await ep.get("/healthz")
        assert (status, text) == (200, b"ok\n")
        assert headers["connection"] == "close"
        assert headers["content-length"] == "3"
    with_endpoint(body)


def test_readyz_follows_proxy_readiness():
    async def main():
        proxy = ReadinessSet(Proxy(load_config(None, environ=ENV)))
        ep = Endpoint(proxy, await start_http_server(proxy, "127.0.0.1:0", "/metrics"))
        try:
            status, _, text = await ep.get("/readyz")
            assert (status, text) == (503, b"proxy is starting\n")
            proxy.answer = READY
            assert (await ep.get("/readyz"))[0] == 200
        finally:
            await stop_http_server(ep.server)
    run(main)


def test_while_draining_readyz_is_503_and_metrics_still_served():
    async def body(ep: Endpoint):
        ep.proxy.state = ProxyState.DRAINING
        status, _, text = await ep.get("/readyz")
        assert (status, text) == (503, b"proxy is draining\n")
        status, _, text = await ep.get("/metrics")
        assert status == 200 and b"mysqlpool_ready 0.0" in text
        assert (await ep.get("/healthz"))[0] == 200
    with_endpoint(body)


def test_metrics_in_the_prometheus_text_format():
    async def body(ep: Endpoint):
        status, headers, text = await ep.get("/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(text.decode())}
        assert {"mysqlpool_ready", "mysqlpool_backend_connections", "mysqlpool_queries"} <= names
        assert int(headers["content-length"]) == len(text)
    with_endpoint(body)


def test_metrics_in_openmetrics_when_asked():
    async def body(ep: Endpoint):
        status, headers, text = await ep.get(
            "/metrics", headers="Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n")
        assert status == 200
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert text.endswith(b"# EOF\n")
    with_endpoint(body)


def test_head_answers_headers_only():
    async def body(ep: Endpoint):
        _, _, get_body = await ep.get("/metrics")
        status, headers, text = await ep.get("/metrics", method="HEAD")
        assert status == 200 and text == b""
        assert int(headers["content-length"]) == pytest.approx(len(get_body), rel=0.05)
        assert (await ep.get("/healthz", method="HEAD"))[:3:2] == (200, b"")
    with_endpoint(body)


def test_a_configured_metrics_path_replaces_the_default():
    async def body(ep: Endpoint):
        assert (await ep.get("/internal/prom"))[0] == 200
        assert (await ep.get("/metrics"))[0] == 404
    with_endpoint(body, metrics_path="/internal/prom")


def test_the_status_page_and_its_json():
    async def body(ep: Endpoint):
        status, headers, page = await ep.get("/status")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'sha256-" in headers["content-security-policy"]
        assert b"<td>app</td>" in page and b"proxy is starting" in page
        assert (await ep.get("/"))[0] == 200
        status, headers, data = await ep.get("/status.json")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(data)["pools"][0]["pool"] == "app"
        status, headers, empty = await ep.get("/status.json", method="HEAD")
        assert (status, empty) == (200, b"") and int(headers["content-length"]) > 0
        assert (await ep.get("/status", method="POST"))[0] == 405
    with_endpoint(body)


def test_query_strings_are_ignored():
    async def body(ep: Endpoint):
        assert (await ep.get("/healthz?verbose=1"))[0] == 200
    with_endpoint(body)


def test_unknown_path_is_404_and_other_methods_405():
    async def body(ep: Endpoint):
        assert (await ep.get("/nope"))[0] == 404
        assert (await ep.get("/metricsx"))[0] == 404
        status, headers, _ = await ep.get("/metrics", method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert (await ep.get("/readyz", method="DELETE"))[0] == 405
    with_endpoint(body)


def test_malformed_requests_are_400_and_other_versions_505():
    async def body(ep: Endpoint):
        assert (await ep.request(b"hello\r\n\r\n"))[0] == 400
        assert (await ep.request(b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n"))[0] == 400
        assert (await ep.request(b"GET /healthz HTTP/2.0\r\n\r\n"))[0] == 505
    with_endpoint(body)


def test_a_client_that_leaves_early_is_no_problem(monkeypatch):
    served = ServedConnections(monkeypatch)

    async def body(ep: Endpoint):
        _, writer = await asyncio.open_connection("127.0.0.1", ep.port)
        writer.write(b"GET /hea")
        writer.close()
        await wait_until_async(lambda: served.finished == 1, 5, "the server done with the early leaver")
        assert (await ep.get("/healthz"))[0] == 200
    with_endpoint(body)


# -- bounds -----------------------------------------------------------------------------

def test_an_oversize_request_head_is_431():
    async def body(ep: Endpoint):
        huge = b"GET /healthz HTTP/1.1\r\nX-Junk: " + b"a" * (http.MAX_HEAD_BYTES * 3) + b"\r\n\r\n"
        assert (await ep.request(huge))[0] == 431
        many = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(http.MAX_HEADERS + 1))
        assert (await ep.request(many + b"\r\n"))[0] == 431
        assert (await ep.get("/healthz"))[0] == 200  # and the server is fine
    with_endpoint(body)


def test_a_slow_request_is_cut_at_the_read_timeout(monkeypatch):
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.3)

    async def body(ep: Endpoint):
        reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
        started_at = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # ... and never the end of the headers
        data = await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - started_at
        writer.close()
        assert parse_response(data)[0] == 408
        assert 0.25 <= elapsed < 3
    with_endpoint(body)


def test_a_silent_connection_is_closed_at_the_read_timeout(monkeypatch):
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.3)

    async def body(ep: Endpoint):
        reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
        data = await asyncio.wait_for(reader.read(), 5)  # EOF comes: the server closed
        writer.close()
        assert parse_response(data)[0] == 408
    with_endpoint(body)


def test_connections_beyond_the_cap_get_503(monkeypatch):
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 2)
    served = ServedConnections(monkeypatch)

    async def body(ep: Endpoint):
        idle = [await asyncio.open_connection("127.0.0.1", ep.port) for _ in range(2)]
        await wait_until_async(lambda: served.open == 2, 5, "both idle connections served")
        assert (await ep.get("/healthz"))[0] == 503
        for _, writer in idle:
            writer.close()
        await wait_until_async(lambda: served.open == 0, 5, "the idle connections' close seen by the server")
        assert (await ep.get("/healthz"))[0] == 200
    with_endpoint(body)


# -- with urllib, from a thread (as the container HEALTHCHECK does) ----------------------

def urllib_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_urllib_client():
    async def body(ep: Endpoint):
        loop = asyncio.get_running_loop()
        base = f"http://127.0.0.1:{ep.port}"
        assert await loop.run_in_executor(None, urllib_get, base + "/healthz") == (200, b"ok\n")
        assert (await loop.run_in_executor(None, urllib_get, base + "/readyz"))[0] == 503
        status, text = await loop.run_in_executor(None, urllib_get, base + "/metrics")
        assert status == 200 and b"# TYPE mysqlpool_info gauge" in text
    with_endpoint(body)


# -- listening and stopping ---------------------------------------------------------------

def test_listens_on_a_unix_socket(tmp_path):
    async def main():
        proxy = Proxy(load_config(None, environ=ENV))
        path = str(tmp_path / "metrics.sock")
        server = await start_http_server(proxy, ListenAddress(unix_path=path), "/metrics")
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert parse_response(data)[0] == 200
        finally:
            await stop_http_server(server)
    run(main)


def test_stop_is_bounded_even_with_an_idle_connection_open(monkeypatch):
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.5)

    async def main():
        ep = await started()
        _, writer = await asyncio.open_connection("127.0.0.1", ep.port)
        started_at = time.monotonic()
        await stop_http_server(ep.server, timeout=3)
        assert time.monotonic() - started_at < 3.5
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", ep.port)
    run(main)


def test_the_same_under_uvloop(monkeypatch):
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.3)

    async def main():
        ep = await started()
        try:
            assert (await ep.get("/healthz"))[0] == 200
            assert (await ep.get("/metrics"))[0] == 200
            huge = b"GET /healthz HTTP/1.1\r\nX-Junk: " + b"a" * (http.MAX_HEAD_BYTES * 3) + b"\r\n\r\n"
            assert (await ep.request(huge))[0] == 431
            assert (await ep.request(b"GET /healthz HTTP/1.1\r\n"))[0] == 408
        finally:
            await stop_http_server(ep.server)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(main(), TEST_TIMEOUT))


# -- closing a connection whose peer is gone ----------------------------------------------

class GoneWriter:
    """A StreamWriter whose socket uvloop finds unconnected at close (a probe's quick reset)."""

    def __init__(self, error: OSError):
        self.error = error
        self.transport = self
        self.aborted = False

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        raise self.error

    def abort(self) -> None:
        self.aborted = True


def test_a_peer_gone_at_close_with_enotconn_is_aborted_not_an_unhandled_error():
    # Seen behind a readiness probe (urllib, then a reset): uvloop's wait_closed() raised
    # OSError(ENOTCONN), which is no ConnectionError, and asyncio logged an unhandled exception.
    import errno

    writer = GoneWriter(OSError(errno.ENOTCONN, "Transport endpoint is not connected"))

    run(http._close, writer)

    assert writer.aborted
