"""The running proxy: users, pools, the server's identity, the clients and their listener.

`Proxy` is built from a Config. It owns:

* one `Pool` per backend account (proxy users that map to the same account
  share it: users.py builds the table, at start and at reload), and the
  global `BackendLimiter`;
* `ServerInfo` (core/server_info.py), learned from the first backend
  connection: the version string clients are greeted with, the collation
  table and the server's default status. Clients are not greeted before it
  is known (they wait up to checkout_timeout), so what they see is always
  the real server's. Every new backend then tells what a new session gets
  now, up or down: its account's wait_timeout (the idle timeout follows),
  the max_allowed_packet, the trackers;
* the registry of connected clients (by proxy connection id); who is let in,
  and what a client is told when it can get no backend, are refusals.py's;
* readiness (`HealthMonitor`, health.py): what the server did lately, and
  the background probe that finds out when nothing else does;
* the client listener and the background tasks it spawns.

To the clients it is their `ClientContext` (client/context.py): the client
layer never imports this one. The operator's services (admin console,
metrics and health endpoints, janitor) are started beside it by app.py
(ops/services.py).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import itertools
import json
import logging
import ssl
from typing import Any, cast

from .. import BUILD, __version__
from ..backend import commands
from ..backend.adapter import (
    KEYED_MARIADB_CAPABILITIES,
    BackendParams,
    Opened,
    make_ssl_context,
    open_backend,
)
from ..backend.connection import BackendGone
from ..backend.pool import KEY_BITS, BackendLimiter, Pool
from ..client.connection import ClientConnection
from ..client.context import ClientContext, ClientHandle, ProxyStats, UserLike
from ..config import Config, UserConfig
from ..constants import (
    CLIENT,
    CLIENT_QUERY_ATTRIBUTES,
    CLIENT_ZSTD_COMPRESSION_ALGORITHM,
    MARIADB_CAPABILITIES,
    MARIADB_CLIENT_BULK_UNIT_RESULTS,
    MARIADB_CLIENT_EXTENDED_METADATA,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
    SERVER_STATUS,
)
from ..core.server_info import ServerInfo, WaitTimeouts
from ..core.session import SessionState, SyncKind, SyncStep, names_variables
from ..core.states import ClientState
from ..errors import ProxyError
from ..events import EventKind, record
from ..protocol import auth
from ..protocol.session_track import Trackers
from ..reasons import BackendCloseReason, ClientCloseReason, RefusalReason
from ..startup import listener_errors
from ..workers import WorkerSlot, share
from .health import HealthMonitor, Readiness
from .refusals import Refusals
from .users import UserEntry, build_users

__all__ = ["Proxy", "ProxyState", "ServerInfo", "UserEntry", "WaitTimeouts"]

log = logging.getLogger("mysqlpool.proxy")

# MariaDB's extended capabilities the proxy offers (where the server has them): only ones its clients'
# backends negotiate, every backend (adapter.BACKEND_MARIADB_CAPABILITIES) or those of the pool key
# that asks (adapter.KEYED_MARIADB_CAPABILITIES, KEY_BITS). Not PROGRESS, COM_MULTI, CACHE_METADATA
# (README "Protocol compatibility" says why). tests/unit/test_mariadb_extensions.py checks it.
OFFERED_MARIADB_CAPABILITIES = (
    MARIADB_CLIENT_STMT_BULK_OPERATIONS | MARIADB_CLIENT_BULK_UNIT_RESULTS | MARIADB_CLIENT_EXTENDED_METADATA
)

# What the proxy offers clients (when the server supports it too). CLIENT_MYSQL (LONG_PASSWORD) is
# offered as the server does: a MariaDB server clears it, and the greeting then carries the MariaDB
# capabilities offered.
OFFERED_CAPABILITIES = (
    CLIENT.LONG_PASSWORD | CLIENT.FOUND_ROWS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.LOCAL_FILES
    | CLIENT.PROTOCOL_41 | CLIENT.INTERACTIVE | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION
    | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH
    | CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.SESSION_TRACK | CLIENT.COMPRESS
    | CLIENT_QUERY_ATTRIBUTES | CLIENT.DEPRECATE_EOF | OFFERED_MARIADB_CAPABILITIES
    | CLIENT_ZSTD_COMPRESSION_ALGORITHM
)

# Offered whatever the server has: the proxy does these itself (session tracking it emulates;
# compression it does on the client's side only, backends stay uncompressed; query attributes
# it takes out of each command, as no backend is opened with them; the DEPRECATE_EOF framing it
# writes from the classic one its backends speak: protocol/response.py). zstd is compressed on the
# client's side too, but offered only where the server's own greeting offers it (MySQL 8; MariaDB
# never does), so a client sees the capabilities of the server kind it would see directly.
CLIENT_SIDE_CAPABILITIES = CLIENT.SESSION_TRACK | CLIENT.COMPRESS | CLIENT_QUERY_ATTRIBUTES | CLIENT.DEPRECATE_EOF


def offered_capabilities(opened: Opened) -> int:
    """What clients are offered, given a backend: the OFFERED_CAPABILITIES its server has (or the proxy
    does itself), and of MariaDB's, those the backend negotiated and the keyed ones its server has (a
    backend of a pool key that asks negotiates them, or fails to open)."""
    plain = OFFERED_CAPABILITIES & ~MARIADB_CAPABILITIES & (opened.server_capabilities | CLIENT_SIDE_CAPABILITIES)
    negotiable = opened.extended_capabilities | (KEYED_MARIADB_CAPABILITIES & opened.server_capabilities)
    return plain | (OFFERED_MARIADB_CAPABILITIES & negotiable)


SCHEMA_CACHE_SIZE = 1024
DEFAULT_MAX_PACKET = 64 << 20  # before the server's max_allowed_packet is known


class ProxyState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Proxy(ClientContext):
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop | None = None, *, opener=open_backend,
                 worker: WorkerSlot | None = None):
        self.config = config
        self._opener = opener
        self.worker = worker  # with [proxy] workers > 1: this process's slot; caps are its share
        self.loop = loop or asyncio.get_running_loop()
        self.state = ProxyState.STARTING
        self.stats = ProxyStats()
        self.limiter = BackendLimiter(self.share(config.backend.max_connections))
        self.pools: dict[str, Pool] = {}
        self.users: dict[bytes, UserEntry] = {}
        self.clients: dict[int, ClientConnection] = {}
        self.server_info: ServerInfo | None = None
        self.server_known = asyncio.Event()
        # Set by request_shutdown() (admin SHUTDOWN); app.serve() waits for it beside the signals.
        self.shutdown_requested = asyncio.Event()
        self.shutdown_timeout: float | None = None
        self.refusals = Refusals(self)
        self.tls_context = self._client_tls(config)
        self._rsa_keys: auth.RsaKeys | None = None
        self._backend_ssl = make_ssl_context(*_ssl_settings(config))
        step = worker.count if worker else 1
        self._client_ids = itertools.count(1 + (worker.index if worker else 0), step)
        self._backend_ids = itertools.count(1)
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._known_schemas: dict[str, set[bytes]] = {}
        self.users = build_users(config, self.pools, self._make_pool, self._reconfigure_pool)
        self.health = HealthMonitor(self, opener)

    # -- construction --------------------------------------------------------------

    @staticmethod
    def _client_tls(config: Config) -> ssl.SSLContext | None:
        if not config.proxy.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(config.proxy.tls_cert, config.proxy.tls_key)
        return ctx

    @property
    def rsa_keys(self) -> auth.RsaKeys:
        """The key pair of the password exchanges over plain TCP: proxy.rsa_private_key (and
        rsa_public_key) if set, else one generated for this process; fixed until restart."""
        if self._rsa_keys is None:
            self._rsa_keys = shared_rsa_keys(self.config)
        return self._rsa_keys

    def _params(self, user: UserConfig) -> BackendParams:
        b = self.config.backend
        return BackendParams(
            host=b.host, port=b.port, unix_socket=b.unix_socket, user=user.backend_user or user.name,
            password=user.backend_password or "", charset=b.charset, connect_timeout=b.connect_timeout,
            ssl=self._backend_ssl, found_rows=False, local_files=False,
            dead_connection_timeout=b.dead_connection_timeout,
        )

    def _make_pool(self, name: str, user: UserConfig, max_size: int) -> Pool:
        p = self.config.pool
        pool = Pool(
            name=name, params=self._params(user), max_size=self.share(max_size),
            min_idle=share(p.min_idle, self.worker.index, self.worker.count) if self.worker else p.min_idle,
            max_lifetime=p.max_lifetime, max_waiting=p.max_waiting_clients, max_connecting=p.max_connecting,
            limiter=self.limiter, loop=self.loop, on_opened=lambda opened: self._backend_opened(name, opened),
            next_backend_id=lambda: next(self._backend_ids), opener=self._opener, share=self.share,
        )
        pool.statement_cache_size = self.statement_cache_size()
        pool.on_connect_failed = self.refusals.backend_failed
        return pool

    def _reconfigure_pool(self, pool: Pool, user: UserConfig | None, max_size: int) -> None:
        """A pool that stays across a reload (`user` None: no user maps to it any more, it winds down)."""
        p = self.config.pool
        if user is None:
            pool.reconfigure(pool.params, max_size=pool.configured_max_size, min_idle=0,
                             max_lifetime=p.max_lifetime, max_waiting=pool.max_waiting,
                             max_connecting=pool.max_connecting)
            return
        min_idle = share(p.min_idle, self.worker.index, self.worker.count) if self.worker else p.min_idle
        pool.reconfigure(self._params(user), max_size=self.share(max_size), min_idle=min_idle,
                         max_lifetime=p.max_lifetime, max_waiting=p.max_waiting_clients,
                         max_connecting=p.max_connecting)
        pool.statement_cache_size = self.statement_cache_size()

    def apply_config(self, new: Config) -> None:
        """Run with `new` from now on (ops/operations.py reload: restart-only settings kept as they run)."""
        old = self.config
        self.config = new
        self.limiter.max = self.share(new.backend.max_connections)
        if _ssl_settings(old) != _ssl_settings(new):
            self._backend_ssl = make_ssl_context(*_ssl_settings(new))
        self.users = build_users(new, self.pools, self._make_pool, self._reconfigure_pool)
        self._known_schemas.clear()
        self.limiter.released()

    def share(self, total: int) -> int:
        """This process's part of a cap (all of it unless [proxy] workers > 1)."""
        if self.worker is None:
            return total
        return max(1, share(total, self.worker.index, self.worker.count))

    def statement_cache_size(self) -> int:
        """Prepared statements cached per backend: [pool] prepared_statement_cache_size, at most the
        server's max_prepared_stmt_count shared by every backend the proxy may open, so that the
        proxy's caches alone never reach it (which would refuse other prepares with 1461)."""
        configured = self.config.pool.prepared_statement_cache_size
        limit = self.server_info.max_prepared_stmt_count if self.server_info is not None else 0
        if not limit:
            return configured
        return max(1, min(configured, limit // self.config.backend.max_connections))

    @property
    def max_packet_size(self) -> int:
        """The largest packet a client may send: [proxy] max_packet_size, at most the server's
        max_allowed_packet (which the server would answer with 1153 and a hang-up)."""
        configured = self.config.proxy.max_packet_size
        server = self.server_info.max_allowed_packet if self.server_info is not None else 0
        limits = [n for n in (configured, server) if n]
        return min(limits) if limits else DEFAULT_MAX_PACKET

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        """The config, and the settings read from it at every statement (ClientContext)."""
        self._config = config
        self.session_mode = config.pool.mode == "session"
        self.ping_after = config.pool.ping_after
        self.query_timeout = config.pool.query_timeout

    # -- the server's identity ---------------------------------------------------------

    def _backend_opened(self, pool: str, opened: Opened) -> SessionState:
        """Called for every new backend of `pool`: learn the server, return the backend's session state."""
        if self.server_info is None or opened.collations is not None:
            self._learn_server(opened)
        elif self.server_info.learn_globals(opened.server_globals, self.loop.time(), self.pools):
            for each in self.pools.values():
                each.statement_cache_size = self.statement_cache_size()
        self._learn_wait_timeout(pool, opened.wait_timeout)
        # The handshake's collation (aiomysql sends no SET NAMES) is behind character_set_client and _results.
        variables = opened.charset_vars
        assert self.server_info is not None  # (learned above)
        names = self.server_info.resolve_names(variables[b"character_set_client"], variables[b"collation_connection"])
        hidden = None if names is None or names[1] else names[0]
        return SessionState(None, dict(variables), True, client_collation=hidden, results_collation=hidden)

    def _learn_wait_timeout(self, pool: str, wait_timeout: float) -> None:
        """Follow the wait_timeout a pool's new backends get, both ways; one log line when it changes."""
        assert self.server_info is not None  # (learned from the backend before)
        timeouts = self.server_info.wait_timeouts
        smallest = timeouts.smallest(self.pools)
        previous = timeouts.learned(pool, self.loop.time(), wait_timeout)
        if previous == wait_timeout:
            return
        configured = self.config.pool.idle_timeout
        if previous is not None:
            log.info("pool %s: the server's wait_timeout for new connections is now %gs (was %gs; connections made "
                     "before keep theirs); idle backends are closed or pinged after %gs",
                     pool, wait_timeout, previous, self.idle_timeout())
        if configured and configured >= wait_timeout and (smallest is None or wait_timeout < smallest):
            log.warning("pool.idle_timeout %gs is not below the server's wait_timeout %gs: the server will close idle "
                        "connections first (set idle_timeout below it, or leave it unset to derive it)",
                        configured, wait_timeout)

    def _learn_server(self, opened: Opened) -> None:
        version = self.config.proxy.server_version or opened.server_version
        previous = self.server_info
        collations = opened.collations or (previous.collations if previous else {})
        charset_id = next((i for i, (_, name, _d) in collations.items()
                           if name.encode() == opened.charset_vars[b"collation_connection"]), 45)
        self.server_info = ServerInfo(
            version=opened.server_version,
            advertised_version=version.encode(),
            capabilities=opened.server_capabilities,
            client_capabilities=offered_capabilities(opened),
            charset_id=charset_id if charset_id < 256 else 45,
            collations=collations,
            initial_status=opened.status & (SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT),
            charset_vars=dict(opened.charset_vars),
            trackers=Trackers.from_settings(opened.server_globals),
            max_allowed_packet=int(opened.server_globals.get(b"max_allowed_packet", b"0")),
            net_write_timeout=float(opened.server_globals.get(b"net_write_timeout", b"60")),
            max_prepared_stmt_count=int(opened.server_globals.get(b"max_prepared_stmt_count", b"0")),
            wait_timeouts=previous.wait_timeouts if previous else WaitTimeouts(),
        )
        if previous is None:
            log.info("backend server %s (wait_timeout %.0fs, max_connections %d, max_user_connections %d)",
                     opened.server_version, opened.wait_timeout, opened.max_connections, opened.max_user_connections)
        for pool in self.pools.values():
            pool.statement_cache_size = self.statement_cache_size()
        self.server_known.set()

    async def _learn_server_task(self) -> None:
        """Open a backend (with the collation table) until one works, in each pool in turn (one
        whose login the server refuses must not keep the server unlearned)."""
        delay = 0.1
        for attempt in itertools.count():
            if self.server_info is not None and self.server_info.collations:
                return
            pools = self.user_pools()
            if await pools[attempt % len(pools)].open_now(want_collations=True):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def user_pools(self) -> list[Pool]:
        """The pools some user maps to, in config order (a pool left by a reload only finishes its clients)."""
        return list({id(e.pool): e.pool for e in self.users.values()}.values())

    # -- clients ---------------------------------------------------------------------

    def next_client_id(self) -> int:
        while True:
            cid = next(self._client_ids) & 0xFFFFFFFF
            if cid and cid not in self.clients:
                return cid

    def new_client(self) -> ClientConnection:
        client = ClientConnection(self, self.next_client_id())
        self.clients[client.id] = client
        return client

    def client_authenticated(self, client: ClientHandle) -> None:
        log.debug("client #%d from %s authenticated (capabilities 0x%x)", client.id, client.peer,
                  client.capabilities)

    def client_closed(self, client: ClientHandle, reason: ClientCloseReason) -> None:
        self.clients.pop(client.id, None)
        self.refusals.logging_in.pop(client.id, None)
        self.stats.client_closed[reason.value] += 1

    def client_by_id(self, client_id: int) -> ClientConnection | None:
        return self.clients.get(client_id)

    # -- admission and refusals (refusals.py) ---------------------------------------------

    @property
    def logging_in(self) -> dict[int, ClientConnection]:
        return self.refusals.logging_in

    def admit(self, client: ClientHandle) -> ProxyError | None:
        return self.refusals.admit(client)

    def client_verified(self, client: ClientHandle) -> ProxyError | None:
        return self.refusals.client_verified(client)

    def refused(self, reason: RefusalReason, detail: str = "") -> None:
        self.refusals.refused(reason, detail)

    def backend_refused(self, client: ClientHandle, error: ProxyError) -> None:
        self.refusals.backend_refused(client, error)

    def describe_backend_problem(self, pool: Pool | None = None) -> ProxyError:
        return self.refusals.describe_backend_problem(pool)

    def backend_known_down(self, pool: Pool) -> bool:
        return self.refusals.backend_known_down(pool)

    def lookup_credentials(self, user: bytes) -> auth.Credentials | None:
        entry = self.users.get(user)
        return entry.credentials if entry else None

    def user_entry(self, user: bytes) -> UserEntry:
        return self.users[user]

    def pool_key(self, capabilities: int) -> int:
        return capabilities & KEY_BITS  # (a method, not a static one: it overrides ClientContext's)

    def initial_session(self, charset_id: int, capabilities: int, schema: bytes | None,
                        multi_statements: bool | None = None) -> SessionState:
        """A fresh session, as the server gives it to a connection with this handshake collation
        (COM_CHANGE_USER's and COM_RESET_CONNECTION's too): all four character set variables,
        and that collation behind character_set_client and character_set_results."""
        info = self.server_info
        assert info is not None  # (clients are greeted once the server is known)
        multi = bool(capabilities & CLIENT.MULTI_STATEMENTS) if multi_statements is None else multi_statements
        found = info.names(charset_id)
        if found is None:
            return SessionState(schema or None, dict(info.charset_vars), multi)
        names, is_default = found
        hidden = None if is_default else names
        return SessionState(schema or None, names_variables(names), multi, client_collation=hidden,
                            results_collation=hidden)

    # -- schemas ---------------------------------------------------------------------

    def schema_known(self, entry: UserLike, schema: bytes) -> bool:
        return schema in self._known_schemas.get(entry.pool.name, ())

    async def check_schema(self, client: ClientHandle, schema: bytes | None) -> ProxyError | None:
        """COM_INIT_DB on a backend: does the schema exist for this user? (cached when it does)
        With `schema` None, only whether a backend can be had (a login while the pool is known down)."""
        pool = client.pool
        assert pool is not None  # (the client has logged in)
        deadline = self.loop.time() + self.config.pool.checkout_timeout
        while True:
            try:
                backend = await client.acquire_backend(deadline)
            except ProxyError as err:
                return err
            try:
                if schema is not None:
                    await commands.run_sync_step(backend, SyncStep(SyncKind.INIT_DB, schema),
                                                 self.config.backend.connect_timeout)
                gone = False
            except ProxyError as err:
                return err
            except BackendGone:
                gone = True  # a dead pooled backend (the server restarted, say): take another
            finally:
                if not backend.closed:
                    pool.release(backend)
            if not gone:
                break
        if schema is None:
            return None
        known = self._known_schemas.setdefault(pool.name, set())
        if len(known) >= SCHEMA_CACHE_SIZE:
            known.clear()
        known.add(schema)
        return None

    # -- lifecycle -----------------------------------------------------------------------

    def idle_timeout(self) -> float:
        """[pool] idle_timeout, or one derived below the smallest wait_timeout an open backend may have
        (WaitTimeouts): idle backends are closed, and held ones pinged, before the server ends them."""
        configured = self.config.pool.idle_timeout
        if configured:
            return configured
        wt = self.server_info.wait_timeouts.smallest(self.pools) if self.server_info is not None else None
        if wt is None:
            return 60.0
        return max(0.5, min(wt * 0.9, wt - 1.0))

    async def start(self) -> None:
        """Listen for clients (a listener that cannot: StartupError naming its key), then start the
        background tasks: learning the server, readiness."""
        config = self.config
        addr = config.proxy.listen_address
        with listener_errors(config, "proxy.listen", addr):
            if addr.unix_path:
                server = await self.loop.create_unix_server(self.new_client, addr.unix_path)
            else:
                server = await self.loop.create_server(
                    self.new_client, addr.host or None, addr.port, reuse_address=True,
                    reuse_port=config.proxy.workers > 1, backlog=1024)
        self._servers.append(server)
        self.state = ProxyState.RUNNING
        keys = self.rsa_keys
        log.info("RSA public key for password exchanges over plain TCP: %s, sha256 %s", "from "
                 + config.proxy.rsa_private_key if config.proxy.rsa_private_key else "generated at start",
                 keys.fingerprint())
        self.spawn(self._learn_server_task())
        self.health.start()
        log.info("mysqlpool-proxy %s (%s) listening on %s (mode %s, pools: %s)", __version__, BUILD,
                 self.listen_description(), self.config.pool.mode,
                 ", ".join(f"{p.name} max {p.max_size}" for p in self.pools.values()))
        record(EventKind.START, f"mysqlpool-proxy {__version__} listening on {self.listen_description()}")
        log.info("effective configuration (secrets masked): %s", json.dumps(self.config.redacted(), sort_keys=True))

    def readiness(self) -> Readiness:
        """Ready to take clients: running, and the server answers the proxy now (see health.py)."""
        return self.health.readiness()

    def ready(self) -> tuple[bool, str]:
        result = self.health.readiness()
        return result.ready, result.reason

    def _listening_sockets(self) -> list[Any]:
        # (typeshed says a tuple; uvloop's servers give a list, which the compiled build would refuse)
        return [s for srv in self._servers for s in cast(Any, srv).sockets]

    def listen_description(self) -> str:
        socks = [s.getsockname() for s in self._listening_sockets()]
        return ", ".join(f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a) for a in socks)

    @property
    def listen_port(self) -> int:
        for s in self._listening_sockets():
            name = s.getsockname()
            if isinstance(name, tuple):
                return name[1]
        return 0

    def spawn(self, coro) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def request_shutdown(self, wait: bool) -> None:
        """Ask the process to stop: with `wait`, clients finish their transactions (up to
        [proxy] shutdown_timeout), as on SIGTERM; without, at once."""
        self.shutdown_timeout = self.config.proxy.shutdown_timeout if wait else 0.0
        self.shutdown_requested.set()

    @property
    def accepting(self) -> bool:
        """New clients are let in (running, not draining)."""
        return self.state is ProxyState.RUNNING

    @property
    def running(self) -> bool:
        return self.state in (ProxyState.RUNNING, ProxyState.DRAINING)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let active clients finish (up to `timeout`), then close every client and backend.
        (The operator's services stop after it, in app.py: health and metrics answer while it drains.)"""
        if self.state is ProxyState.STOPPED:
            return
        self.state = ProxyState.DRAINING
        for server in self._servers:
            server.close()
        timeout = self.config.proxy.shutdown_timeout if timeout is None else timeout
        record(EventKind.SHUTDOWN, f"shutting down: {len(self.clients)} clients, waiting up to {timeout:g}s")
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline:
            for client in list(self.clients.values()):
                if client.state in (ClientState.READY, ClientState.GREETING, ClientState.HANDSHAKE) \
                        and not client.holds_state():
                    client.close(ClientCloseReason.SHUTDOWN)
            if not self.clients:
                break
            await asyncio.sleep(0.05)
        for client in list(self.clients.values()):
            client.close(ClientCloseReason.SHUTDOWN)
        for pool in self.pools.values():
            pool.close()
            for backend in list(pool.busy):
                backend.close(BackendCloseReason.SHUTDOWN)
        self.state = ProxyState.STOPPED
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()


def _ssl_settings(config: Config) -> tuple[str, str, str, str]:
    b = config.backend
    return b.ssl_mode, b.ssl_ca, b.ssl_cert, b.ssl_key


def shared_rsa_keys(config: Config) -> auth.RsaKeys:
    """The process's RSA key pair for `config`; app.run() makes it before forking workers, so that
    they all share it (a client given the public key in advance works with each)."""
    return _rsa_keys(config.proxy.rsa_private_key, config.proxy.rsa_public_key)


@functools.cache
def _rsa_keys(private_path: str, public_path: str) -> auth.RsaKeys:
    """Loaded from the configured files (checked by load_config()), or generated: once per process."""
    if not private_path:
        return auth.RsaKeys.generate()
    with open(private_path, "rb") as fh:
        private_pem = fh.read()
    public_pem = None
    if public_path:
        with open(public_path, "rb") as fh:
            public_pem = fh.read()
    return auth.RsaKeys.from_pem(private_pem, public_pem)
