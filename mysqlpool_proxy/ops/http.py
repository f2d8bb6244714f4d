# The metrics and health HTTP endpoint ([metrics] listen).
#
# What this module owns: a tiny HTTP/1.1 server on asyncio streams (no web
# framework) with three routes:
#   GET <metrics path>  Prometheus exposition of the proxy's collector
#                       (OpenMetrics when the scraper asks for it in Accept);
#                       with several workers, every worker's (peers.py), or
#                       this worker's only with ?scope=worker
#   GET /healthz        200 "ok" while the process serves: the liveness probe
#   GET /readyz         200 when Proxy.readiness() says so (the server answered
#                       within backend.probe_interval: see health.py), else 503
#                       with the reason: the readiness probe
#   GET /status, GET /  the status page (status.py): pools, clients, servers
#                       and recent events as HTML, refreshing itself
#   GET /status.json    the same data as JSON
# HEAD works on all of them; another method gets 405, another path 404.
# (A metrics path set to one of the status paths wins over the page.)
#
# How it works: one request per connection ("Connection: close" on every
# answer). Everything is bounded: the request line and headers together may
# be MAX_HEAD_BYTES (431 past that), must arrive within READ_TIMEOUT (then
# 408 and close: no slowloris), the answer must be taken within
# WRITE_TIMEOUT, and at most MAX_CONNECTIONS are served at once (503 past
# that). A request body is never read; after an error answer, input still
# arriving is read and dropped for up to LINGER_TIMEOUT so the peer sees the
# answer rather than a reset. The server is separate from the
# proxy's client listeners, so it keeps answering while the proxy drains
# (/readyz then says 503, /metrics still works) until stop_http_server().
"""HTTP endpoint for Prometheus metrics and Kubernetes-style health probes."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder

from ..config import ListenAddress, parse_listen
from .metrics import build_registry
from .peers import WORKER_SCOPE, peers_of, whole_exposition
from .status import HTML_HEADERS, status_html, status_json

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ..proxy.proxy import Proxy

__all__ = ["start_http_server", "stop_http_server", "HEALTH_PATH", "READY_PATH", "STATUS_PATH", "STATUS_JSON_PATH"]

log = logging.getLogger("mysqlpool.http")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
STATUS_PATH = "/status"
STATUS_JSON_PATH = "/status.json"

MAX_HEAD_BYTES = 8192  # request line + headers
MAX_HEADERS = 64
READ_TIMEOUT = 5.0  # seconds for the whole request head
WRITE_TIMEOUT = 10.0  # seconds for the client to take the answer
CLOSE_TIMEOUT = 2.0  # seconds to wait for a closed connection to go
MAX_CONNECTIONS = 64  # HTTP connections served at once
LINGER_TIMEOUT = 1.0  # seconds to drop unread input after an error answer
LINGER_BYTES = 1 << 20  # at most this much of it
STOP_TIMEOUT = 5.0  # seconds stop_http_server() waits for open connections

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
ALLOWED_METHODS = ("GET", "HEAD")
REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    query: str = ""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class HttpEndpoint:
    """Routes requests to the proxy's metrics and health; one instance per listening server."""

    def __init__(self, proxy: Proxy, metrics_path: str, registry: CollectorRegistry | None = None):
        self.proxy = proxy
        self.metrics_path = metrics_path
        self.registry = registry or build_registry(proxy)
        self.open_connections = 0
        self.routes = {"/": self.status, STATUS_PATH: self.status, STATUS_JSON_PATH: self.status_json,
                       HEALTH_PATH: self.healthz, READY_PATH: self.readyz, metrics_path: self.metrics}

    # -- routes ------------------------------------------------------------------------

    def metrics(self, request: Request) -> Response | Awaitable[Response]:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        peers = peers_of(self.proxy)
        if peers is None or WORKER_SCOPE in request.query.split("&"):
            return Response(200, encoder(self.registry), content_type)
        return self._whole(whole_exposition(peers, self.registry, encoder), content_type)

    async def _whole(self, exposition: Awaitable[bytes], content_type: str) -> Response:
        return Response(200, await exposition, content_type)

    def healthz(self, request: Request) -> Response:
        return Response(200, b"ok\n")

    def readyz(self, request: Request) -> Response:
        readiness = self.proxy.readiness()
        return Response(200 if readiness.ready else 503, (readiness.reason + "\n").encode("utf-8", "replace"))

    def status(self, request: Request) -> Response:
        return Response(200, status_html(self.proxy), HTML, dict(HTML_HEADERS))

    def status_json(self, request: Request) -> Response:
        return Response(200, status_json(self.proxy), JSON)

    def respond(self, request: Request) -> Response | Awaitable[Response]:
        route = self.routes.get(request.path)
        if route is None:
            return Response(404, b"not found\n")
        if request.method not in ALLOWED_METHODS:
            return Response(405, b"method not allowed\n", headers={"Allow": ", ".join(ALLOWED_METHODS)})
        try:
            return route(request)
        except Exception:  # a failing collector must not take the endpoint down
            log.exception("HTTP %s %s failed", request.method, request.path)
            return Response(500, b"internal error\n")

    # -- connections ---------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            response, method = await self._answer(reader)
            if response is not None:
                await _send(writer, response, head_only=method == "HEAD")
                if response.status >= 400:
                    await _drain_input(reader, writer)
        except (ConnectionError, TimeoutError):
            writer.transport.abort()
        finally:
            self.open_connections -= 1
            await _close(writer)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Response | None, str]:
        """The response to send (None: the peer left), and the request method."""
        if self.open_connections > MAX_CONNECTIONS:
            return Response(503, b"too many connections\n"), "GET"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            request = parse_head(head)
        except asyncio.IncompleteReadError:
            return None, ""
        except TimeoutError:
            return Response(408, b"request timeout\n"), "GET"
        except asyncio.LimitOverrunError:
            return Response(431, b"request head too large\n"), "GET"
        except BadRequest as err:
            return Response(err.status, (str(err) + "\n").encode()), "GET"
        response = self.respond(request)
        if inspect.isawaitable(response):  # asks the other workers
            try:
                response = await response
            except Exception:
                log.exception("HTTP %s %s failed", request.method, request.path)
                response = Response(500, b"internal error\n")
        return response, request.method


def parse_head(head: bytes) -> Request:
    """Request line and headers (ending in CRLF CRLF) -> Request; BadRequest if malformed."""
    lines = head.decode("latin-1")[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise BadRequest(400, "bad request line")
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise BadRequest(505, "only HTTP/1.x is served")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, "too many headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        headers[name.lower()] = value.strip()
    return Request(method, _path_of(target), headers, target.partition("?")[2].partition("#")[0])


def _path_of(target: str) -> str:
    """The path of an origin-form ("/p?q") or absolute-form ("http://h/p") request target."""
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return target.partition("?")[0].partition("#")[0]


async def _send(writer: asyncio.StreamWriter, response: Response, *, head_only: bool) -> None:
    status = response.status
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(response.body)
    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


async def _drain_input(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Lingering close after an error: stop writing, then read and drop what the peer still sends.

    Closing with unread input makes the kernel reset the connection, and the
    peer may then lose the error response before reading it.
    """
    if not writer.can_write_eof():
        return
    writer.write_eof()
    deadline = asyncio.get_running_loop().time() + LINGER_TIMEOUT
    dropped = 0
    while dropped < LINGER_BYTES:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except (TimeoutError, asyncio.LimitOverrunError):
            return
        if not chunk:
            return
        dropped += len(chunk)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (OSError, TimeoutError):  # OSError: also ENOTCONN from uvloop when the peer reset first
        writer.transport.abort()


async def start_http_server(proxy: Proxy, listen_address: ListenAddress | str,
                            metrics_path: str) -> asyncio.AbstractServer:
    """Listen on `listen_address` ("host:port", "unix:/path" or a ListenAddress) and serve the routes."""
    address = parse_listen(listen_address) if isinstance(listen_address, str) else listen_address
    endpoint = HttpEndpoint(proxy, metrics_path)
    if address.is_unix:
        server = await asyncio.start_unix_server(endpoint.handle, address.unix_path, limit=MAX_HEAD_BYTES)
    else:
        server = await asyncio.start_server(endpoint.handle, address.host or None, address.port,
                                            limit=MAX_HEAD_BYTES, reuse_address=True)
    log.info("metrics on http://%s%s, health on %s and %s, status page on %s", _describe(server), metrics_path,
             HEALTH_PATH, READY_PATH, STATUS_PATH)
    return server


async def stop_http_server(server: asyncio.AbstractServer, timeout: float = STOP_TIMEOUT) -> None:
    """Stop listening and wait (up to `timeout`) for the open HTTP connections to finish."""
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout)
    except TimeoutError:
        log.warning("HTTP connections still open after %.1fs at shutdown", timeout)


def _describe(server: asyncio.Server) -> str:
    names = [s.getsockname() for s in server.sockets]
    return ", ".join(f"{n[0]}:{n[1]}" if isinstance(n, tuple) else str(n) for n in names)
