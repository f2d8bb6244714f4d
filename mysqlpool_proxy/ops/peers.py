# A worker's peers ([proxy] workers > 1): the rest of the proxy, as one worker asks it.
#
# Owns: where the other workers' admin consoles and metrics endpoints are
# (`Peers`, from this worker's slot and config: worker j listens on the
# configured port + j), talking to them (`AdminPeerClient`), and putting their
# answers together with this worker's own: `everywhere()` for an admin command
# (rows get a `worker` column first; actions are OK only when every worker's
# is), `forward()` for a command one worker must run (KILL CLIENT of a client
# of another worker), `whole_exposition()` for one Prometheus exposition with
# every worker's series and a `mysqlpool_worker_up` gauge.
#
# How: a worker logs in to a peer's console as PEER_USER with the secret the
# supervisor drew before forking (WorkerSlot.secret; the console accepts that
# login only over loopback, a unix socket or from this host's own address), and
# sends the command as typed; a console logged in so runs commands on its own
# worker only, so a command never fans out twice. A scrape asks the peer's
# metrics path with `?scope=worker`, which answers that worker's families
# only. Every peer call is bounded (PEER_TIMEOUT, plus shutdown_timeout for
# the commands that wait); a peer that does not answer within it makes an
# admin command fail with an error naming the worker, and a scrape report it
# as `mysqlpool_worker_up{worker} 0`. With one worker there are no peers, and
# nothing here runs.
"""Fan admin commands and scrapes out to the other workers, and merge their answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import aiomysql
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from ..config import ListenAddress
from ..constants import ER, FIELD_TYPE
from ..errors import ProxyError
from ..protocol.resultset import Column, Ok, Reply, Rows
from ..workers import PEER_USER

if TYPE_CHECKING:
    from ..proxy.proxy import Proxy

__all__ = ["PEER_USER", "PEER_TIMEOUT", "WORKER_SCOPE", "Peer", "Peers", "PeerClient", "AdminPeerClient",
           "peers_of", "everywhere", "forward", "merge_rows", "merge_expositions", "whole_exposition"]

PEER_TIMEOUT = 2.0  # seconds a peer has to answer a SHOW, a quick action or a scrape
WORKER_SCOPE = "scope=worker"  # the query string of a scrape of one worker's own families
MAX_SCRAPE_BYTES = 64 << 20  # a peer's exposition larger than this is refused
WORKER_COLUMN = Column("worker", FIELD_TYPE.LONGLONG)


@dataclass(frozen=True, slots=True)
class Peer:
    index: int
    admin: tuple[str, int] | None  # host, port to dial; None: no console, or not reachable per worker
    metrics: tuple[str, int] | None


class PeerUnreachable(Exception):
    """A peer that did not answer (in time)."""


class PeerClient(Protocol):
    """How a worker talks to a peer (AdminPeerClient; tests use a fake)."""

    async def query(self, peer: Peer, sql: str, timeout: float) -> Reply:
        """The peer console's answer to `sql`: ProxyError for an error, PeerUnreachable for none."""

    async def scrape(self, peer: Peer, timeout: float) -> str:
        """The peer's own exposition (text format), or PeerUnreachable."""


@dataclass(frozen=True, slots=True)
class Peers:
    index: int  # this worker
    count: int
    others: tuple[Peer, ...]
    client: PeerClient = field(repr=False)

    def owner(self, client_id: int) -> int:
        """The worker that handed out `client_id` (worker i hands out i+1, i+1+N, ...)."""
        return (client_id - 1) % self.count

    def peer(self, index: int) -> Peer:
        return next(p for p in self.others if p.index == index)


def _dialled(listen: ListenAddress | None, own: int, index: int) -> tuple[str, int] | None:
    """Where worker `index` listens, from this worker's (`own`) shifted address; None if not per worker."""
    if listen is None or listen.is_unix or not listen.port:
        return None
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen.host or "", listen.host)
    return host, listen.port - own + index


def peers_of(proxy: Proxy) -> Peers | None:
    """This worker's peers; None with one worker (or a worker without the supervisor's secret)."""
    slot = proxy.worker
    if slot is None or slot.count <= 1 or not slot.secret:
        return None
    config = proxy.config
    admin = config.admin.listen_address if config.admin.enabled else None
    metrics = config.metrics.listen_address if config.metrics.enabled else None
    others = tuple(Peer(j, _dialled(admin, slot.index, j), _dialled(metrics, slot.index, j))
                   for j in range(slot.count) if j != slot.index)
    return Peers(slot.index, slot.count, others, AdminPeerClient(slot.secret, config.metrics.path))


# -- admin commands -------------------------------------------------------------------------------


async def everywhere(peers: Peers, sql: str, local: Reply | Awaitable[Reply | None], timeout: float) -> Reply:
    """`sql` run by every worker: this one's `local` answer beside each peer's, asked concurrently.

    Rows come back as one result set with a `worker` column first; OKs as this
    worker's OK once every worker said OK. Any worker's error (or silence
    within `timeout`) makes the whole an error naming the workers that failed
    and why, and those that did it."""
    asked = [_asked(peers, peer, sql, timeout) for peer in peers.others]
    results = await asyncio.gather(_local(peers.index, local), *asked, return_exceptions=True)
    by_worker = dict(zip([peers.index, *(p.index for p in peers.others)], results, strict=True))
    for result in by_worker.values():
        if isinstance(result, BaseException) and not isinstance(result, ProxyError):
            raise result  # a bug here: the console logs it
    failed = {w: r for w, r in sorted(by_worker.items()) if isinstance(r, ProxyError)}
    mine = by_worker[peers.index]
    if failed:
        done = [str(w) for w, r in sorted(by_worker.items()) if w not in failed]
        first = next(iter(failed.values()))
        tail = f" (done on worker {', '.join(done)})" if done and not isinstance(mine, Rows) else ""
        if isinstance(mine, Ok) and mine.then is not None:
            mine.then()  # done here means done (SHUTDOWN): the error reply is still written
        raise ProxyError(first.errno, "; ".join(r.message for r in failed.values()) + tail, first.sqlstate)
    if isinstance(mine, Rows):
        theirs = {w: r for w, r in by_worker.items() if w != peers.index and isinstance(r, (Rows, Ok))}
        return merge_rows(mine, theirs, peers.index)
    assert isinstance(mine, Ok)  # (not an error: those were raised above)
    suffix = f" (on all {peers.count} workers)"
    return Ok((mine.info + suffix) if mine.info else suffix.strip(" ()"), then=mine.then)


async def forward(peers: Peers, index: int, sql: str, timeout: float) -> Reply:
    """`sql` run by worker `index` only (its error, or its silence, names it)."""
    return await _asked(peers, peers.peer(index), sql, timeout)


async def _local(index: int, local: Reply | Awaitable[Reply | None]) -> Reply:
    try:
        reply = await local if isinstance(local, Awaitable) else local
    except ProxyError as err:
        raise ProxyError(err.errno, f"worker {index}: {err.message}", err.sqlstate) from None
    return reply or Ok()


async def _asked(peers: Peers, peer: Peer, sql: str, timeout: float) -> Reply:
    if peer.admin is None:
        raise ProxyError(ER.UNKNOWN_ERROR, f"worker {peer.index}: its admin console has no address of its own "
                         "(admin.listen is a unix socket or port 0), so it cannot be asked")
    try:
        return await _bounded(peers.client.query(peer, sql, timeout), timeout)
    except ProxyError as err:
        raise ProxyError(err.errno, f"worker {peer.index}: {err.message}", err.sqlstate) from None
    except PeerUnreachable as why:
        raise ProxyError(ER.UNKNOWN_ERROR, f"worker {peer.index} ({_shown(peer.admin)}) did not answer: {why}") \
            from None


async def _bounded(call: Awaitable[Reply], timeout: float) -> Reply:
    """`call` within `timeout`, else PeerUnreachable."""
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise PeerUnreachable(f"no answer within {timeout:g}s") from None


def merge_rows(mine: Rows, theirs: dict[int, Reply], index: int) -> Rows:
    """One result set: every worker's rows, in worker order, each behind its worker's number."""
    by_worker = sorted({**theirs, index: mine}.items())
    for worker, reply in by_worker:
        odd = next((len(row) for row in reply.rows if len(row) != len(mine.columns)), None) \
            if isinstance(reply, Rows) else None
        if odd is not None:
            raise ProxyError(ER.UNKNOWN_ERROR, f"worker {worker} answered {odd} columns, worker {index} "
                             f"{len(mine.columns)}: are they running different versions?")
    return Rows([WORKER_COLUMN, *mine.columns], [(worker, *row) for worker, reply in by_worker
                                                 if isinstance(reply, Rows) for row in reply.rows])


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AdminPeerClient:
    """Talks to peers: their consoles with aiomysql (as PEER_USER), their metrics over plain HTTP."""

    def __init__(self, secret: str, metrics_path: str):
        self._secret = secret
        self._metrics_path = metrics_path

    def __repr__(self) -> str:  # never the secret
        return "AdminPeerClient()"

    async def query(self, peer: Peer, sql: str, timeout: float) -> Reply:
        assert peer.admin is not None  # (checked by the caller)
        host, port = peer.admin
        try:
            conn = await aiomysql.connect(host=host, port=port, user=PEER_USER, password=self._secret,
                                          connect_timeout=min(timeout, PEER_TIMEOUT), autocommit=None)
        except aiomysql.OperationalError as err:
            raise PeerUnreachable(_error_text(err)) from None
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql)
                if cursor.description is None:
                    return Ok()
                return Rows([], [tuple(row) for row in await cursor.fetchall()])
        except aiomysql.MySQLError as err:
            errno = err.args[0] if err.args and isinstance(err.args[0], int) else ER.UNKNOWN_ERROR
            if errno >= 2000:  # a client-side error: the connection broke
                raise PeerUnreachable(_error_text(err)) from None
            raise ProxyError(errno, _error_text(err)) from None
        finally:
            conn.close()

    async def scrape(self, peer: Peer, timeout: float) -> str:
        assert peer.metrics is not None  # (checked by the caller)
        host, port = peer.metrics
        try:
            return await asyncio.wait_for(self._get(host, port), timeout)
        except TimeoutError:
            raise PeerUnreachable(f"no answer within {timeout:g}s") from None
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise PeerUnreachable(str(err) or type(err).__name__) from None

    async def _get(self, host: str, port: int) -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {self._metrics_path}?{WORKER_SCOPE} HTTP/1.1\r\nHost: {_shown((host, port))}\r\n"
                         "Connection: close\r\n\r\n".encode("latin-1"))
            data = bytearray()
            while chunk := await reader.read(65536):
                data += chunk
                if len(data) > MAX_SCRAPE_BYTES:
                    raise ValueError(f"exposition larger than {MAX_SCRAPE_BYTES} bytes")
        finally:
            writer.close()
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            raise ValueError(f"HTTP status {head[:40]!r}")
        return body.decode("utf-8")


def _error_text(err: BaseException) -> str:
    return str(err.args[1]) if len(err.args) > 1 else str(err) or type(err).__name__


# -- metrics --------------------------------------------------------------------------------------

WORKER_UP = "mysqlpool_worker_up"


def merge_expositions(texts: dict[int, str | None]) -> list[Metric]:
    """Every worker's families (text format; None: that worker did not answer) as one set: one family
    per name, its samples worker after worker, each sample labelled with its worker; and
    mysqlpool_worker_up, 1 for each worker that answered, 0 for the others."""
    parsed = {worker: _parsed(text) for worker, text in sorted(texts.items())}
    families: dict[str, Metric] = {}
    for worker, of_worker in parsed.items():
        for family in of_worker or ():
            samples = [s if "worker" in s.labels else s._replace(labels={**s.labels, "worker": str(worker)})
                       for s in family.samples]
            known = families.get(family.name)
            if known is None:
                family.samples = samples
                families[family.name] = family
            elif known.type == family.type:  # (not: workers of different versions, mid-upgrade; the first wins)
                known.samples.extend(samples)
    up = GaugeMetricFamily(WORKER_UP, "1 for each worker whose figures this scrape includes; 0 for a worker "
                           "that did not answer within the bound (its series are missing).", labels=["worker"])
    for worker, of_worker in parsed.items():
        up.add_metric([str(worker)], 0 if of_worker is None else 1)
    families[WORKER_UP] = up
    return list(families.values())


def _parsed(text: str | None) -> list[Metric] | None:
    """The families of an exposition; None for none, or one that does not parse."""
    if text is None:
        return None
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:
        return None


class _Families:
    def __init__(self, families: Iterable[Metric]):
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


async def whole_exposition(peers: Peers, registry: CollectorRegistry,
                           encoder: Callable[[CollectorRegistry], bytes]) -> bytes:
    """This worker's registry and every peer's own families, merged, in `encoder`'s format."""
    texts: dict[int, str | None] = {peers.index: generate_latest(registry).decode("utf-8")}
    scraped = await asyncio.gather(*(_scraped(peers, p) for p in peers.others))
    texts |= {p.index: text for p, text in zip(peers.others, scraped, strict=True)}
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_Families(merge_expositions(texts)))
    return encoder(merged)


async def _scraped(peers: Peers, peer: Peer) -> str | None:
    if peer.metrics is None:
        return None
    try:
        return await peers.client.scrape(peer, PEER_TIMEOUT)
    except PeerUnreachable:
        return None
