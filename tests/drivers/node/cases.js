// The driver-compatibility cases (tests/drivers/README.md) run with mysql2's
// promise API, as a Node application would use it: connection.query (text
// protocol), connection.execute (server-side prepared statements, cached per
// connection), a per-query timeout, and mysql2's own pool.
// Usage: node cases.js mysql://user:password@host:port/database
// Prints one JSON object per case on stdout.
'use strict';

const crypto = require('crypto');
const mysql = require('mysql2/promise');

const P = 'drv_node_';

function options(raw) {
  const url = new URL(raw);
  if (url.protocol !== 'mysql:') throw new Error(`not a mysql:// URL: ${raw}`);
  return {
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1),
    charset: 'UTF8MB4_GENERAL_CI',
    connectTimeout: 10000,
    dateStrings: true,
    timezone: 'Z',
  };
}

function emit(name, result, error) {
  console.log(JSON.stringify({
    case: name, ok: !error, result: error ? null : result,
    error: error ? `${error.code || error.name}: ${error.message}` : null,
  }));
}

async function values(conn, sql, params) {
  const [rows] = await conn.query({ sql, rowsAsArray: true }, params);
  return rows.map((row) => row.map((v) => (v === null ? null : Buffer.isBuffer(v) ? v.toString('hex') : String(v))));
}

async function one(conn, sql, params) {
  const [[row]] = await conn.query({ sql, rowsAsArray: true }, params);
  return row[0] === null ? 'NULL' : String(row[0]);
}

async function connectCase(base, tls) {
  const conn = await mysql.createConnection(tls ? { ...base, ssl: { rejectUnauthorized: false } } : base);
  try {
    const who = await one(conn, "SELECT CONCAT('connected as ', CURRENT_USER())");
    return { who, encrypted: Boolean(conn.connection.stream.encrypted) };
  } finally {
    await conn.end();
  }
}

async function preparedTypes(conn) {
  const when = new Date(Date.UTC(2024, 1, 29, 13, 45, 6, 123));
  const insert = `INSERT INTO ${P}types (id, d, s, n, t, b) VALUES (?, ?, ?, ?, ?, ?)`;
  await conn.execute(insert, [1, '12345678.9012', 'héllo 🐬 wörld', null, when, Buffer.from([0, 1, 2, 0xff])]);
  await conn.execute(insert, [2, -0.5, '', 7, new Date(when.getTime() - 3600e3), Buffer.alloc(0)]);
  const [rows] = await conn.execute(
    `SELECT id, d, s, n, t, b, ? AS echo FROM ${P}types WHERE id >= ? ORDER BY id`, ['ping 🏓', 1]);
  return rows.map((r) => [r.id, r.d, r.s, r.n, r.t, r.b.toString('hex'), r.echo]);
}

async function transaction(conn) {
  await conn.query(`DELETE FROM ${P}kv`);
  await conn.beginTransaction();
  await conn.execute(`INSERT INTO ${P}kv (v) VALUES (?)`, ['committed']);
  await conn.commit();
  await conn.beginTransaction();
  await conn.execute(`INSERT INTO ${P}kv (v) VALUES (?)`, ['rolled back']);
  const inside = await values(conn, `SELECT v FROM ${P}kv ORDER BY id`);
  await conn.rollback();
  return { inside, after: await values(conn, `SELECT v FROM ${P}kv ORDER BY id`) };
}

async function savepoint(conn) {
  await conn.query(`DELETE FROM ${P}kv`);
  await conn.beginTransaction();
  await conn.query(`INSERT INTO ${P}kv (v) VALUES ('before')`);
  await conn.query('SAVEPOINT sp1');
  await conn.query(`INSERT INTO ${P}kv (v) VALUES ('undone')`);
  await conn.query('ROLLBACK TO SAVEPOINT sp1');
  await conn.query(`INSERT INTO ${P}kv (v) VALUES ('after')`);
  await conn.query('RELEASE SAVEPOINT sp1');
  await conn.commit();
  return values(conn, `SELECT v FROM ${P}kv ORDER BY id`);
}

async function preparedReuse(conn) {
  let sum = 0;
  let last = null;
  for (let i = 0; i < 500; i++) {
    const [[row]] = await conn.execute({ sql: 'SELECT ? * 2, CONCAT(\'n\', ?)', rowsAsArray: true }, [i, i]);
    sum += Number(row[0]);
    last = row[1];
  }
  return { sum, last };
}

async function poolConcurrency(base) {
  const workers = 20;
  const rounds = 10;
  const pool = mysql.createPool({ ...base, connectionLimit: workers, waitForConnections: true });
  try {
    const sums = await Promise.all(Array.from({ length: workers }, async (_, w) => {
      let sum = 0;
      for (let r = 0; r < rounds; r++) {
        const conn = await pool.getConnection();
        try {
          await conn.beginTransaction();
          const [[row]] = await conn.execute({ sql: 'SELECT ? + SLEEP(0.005)', rowsAsArray: true }, [w * rounds + r]);
          await conn.commit();
          sum += Number(row[0]);
        } finally {
          conn.release();
        }
      }
      return sum;
    }));
    return { workers, rounds, sum: sums.reduce((a, b) => a + b, 0) };
  } finally {
    await pool.end();
  }
}

async function duplicateKey(conn) {
  await conn.query(`DELETE FROM ${P}kv`);
  await conn.query(`INSERT INTO ${P}kv (id, v) VALUES (1, 'first')`);
  let errno = 0;
  try {
    await conn.query(`INSERT INTO ${P}kv (id, v) VALUES (1, 'again')`);
    throw new Error('the duplicate insert succeeded');
  } catch (e) {
    if (!e.errno) throw e;
    errno = e.errno;
  }
  return { errno, after: await one(conn, `SELECT v FROM ${P}kv WHERE id = 1`) };
}

async function queryTimeout(base) {
  // mysql2 gives up on the query after `timeout` and destroys the connection.
  const conn = await mysql.createConnection(base);
  let code = null;
  try {
    await conn.query({ sql: 'SELECT SLEEP(3)', timeout: 300 });
    throw new Error('SLEEP(3) with a 300 ms timeout returned');
  } catch (e) {
    if (e.code !== 'PROTOCOL_SEQUENCE_TIMEOUT') throw e;
    code = e.code;
  } finally {
    conn.destroy();
  }
  const again = await mysql.createConnection(base);
  try {
    return { code, after: await one(again, "SELECT 'usable'") };
  } finally {
    await again.end();
  }
}

const KILL_MARKER = 'SELECT SLEEP(5) AS kill_me_node';

async function killQuery(conn, base) {
  const id = await one(conn, 'SELECT CONNECTION_ID()');
  const killer = await mysql.createConnection(base);
  try {
    const victim = one(conn, KILL_MARKER).then((value) => ({ value, errno: 0 }),
      (e) => ({ value: 'NULL', errno: e.errno || -1 }));
    const deadline = Date.now() + 5000;
    while (await one(killer, 'SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = ?', [KILL_MARKER]) === '0') {
      if (Date.now() > deadline) throw new Error('the query to kill never showed in the process list');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await killer.query(`KILL QUERY ${id}`);
    const outcome = await victim;
    return { ...outcome, after: await one(conn, "SELECT 'usable'") };
  } finally {
    await killer.end();
  }
}

async function largeResult(conn) {
  const [rows] = await conn.query({ sql: "SELECT seq, REPEAT('x', seq % 100) FROM seq_1_to_10000", rowsAsArray: true });
  let sum = 0;
  let chars = 0;
  for (const [n, s] of rows) {
    sum += Number(n);
    chars += s.length;
  }
  return { rows: rows.length, sum, chars };
}

async function largePacket(conn) {
  const blob = Buffer.alloc(4 << 20);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 7) % 251;
  await conn.execute(`REPLACE INTO ${P}blobs (id, b) VALUES (?, ?)`, [1, blob]);
  const [[row]] = await conn.execute(`SELECT b FROM ${P}blobs WHERE id = ?`, [1]);
  return {
    bytes: row.b.length,
    same: blob.equals(row.b),
    sha256: crypto.createHash('sha256').update(row.b).digest('hex'),
  };
}

async function sessionVariable(conn) {
  await conn.query("SET time_zone = '+05:30'");
  await conn.query("SET SESSION sql_mode = 'ANSI_QUOTES'");
  await conn.query("SET @greeting = 'hi 🐬'");
  return values(conn, 'SELECT @@time_zone, @@sql_mode, @greeting');
}

async function lastInsertId(conn) {
  await conn.query(`TRUNCATE TABLE ${P}kv`);
  const [result] = await conn.execute(`INSERT INTO ${P}kv (v) VALUES (?), (?)`, ['a', 'b']);
  return { driver: result.insertId, sql: await one(conn, 'SELECT LAST_INSERT_ID()') };
}

async function multiStatements(base) {
  const conn = await mysql.createConnection({ ...base, multipleStatements: true });
  try {
    const [sets] = await conn.query({ sql: "SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; SELECT 3", rowsAsArray: true });
    return { sets: sets.map((set) => set.map((row) => row.map(String))), after: await one(conn, "SELECT 'in sync'") };
  } finally {
    await conn.end();
  }
}

// The compressed protocol: a 5 MiB parameter of a prepared statement (many
// compressed frames), a 6 MiB text result, 10,000 rows.
async function compressed(base) {
  const conn = await mysql.createConnection({ ...base, compress: true });
  try {
    const blob = crypto.createHash('sha512').update('seed').digest().toString('hex').repeat(40000);  // 5 MiB of text
    const [[echo]] = await conn.execute({ sql: 'SELECT LENGTH(?), MD5(?)', rowsAsArray: true }, [blob, blob]);
    const [[big]] = await conn.query({ sql: "SELECT REPEAT('ab', 3000000)", rowsAsArray: true });
    return {
      echoed: echo.map(String),
      local_md5: crypto.createHash('md5').update(blob).digest('hex'),
      big: [big[0].length, crypto.createHash('md5').update(big[0]).digest('hex')],
      rows: (await largeResult(conn)).rows,
    };
  } finally {
    await conn.end();
  }
}

// COM_PING, COM_RESET_CONNECTION and COM_CHANGE_USER through mysql2's own calls.
async function pingResetChangeUser(base) {
  const conn = await mysql.createConnection(base);
  try {
    await conn.ping();
    await conn.query("SET @kept = 'before reset'");
    const before = await one(conn, 'SELECT @kept');
    await conn.reset();
    const afterReset = await one(conn, 'SELECT @kept');
    await conn.query("SET @kept = 'before change user'");
    await conn.changeUser({ user: base.user, password: base.password, database: base.database });
    return { before, afterReset, afterChangeUser: await one(conn, 'SELECT @kept'),
             user: await one(conn, 'SELECT CURRENT_USER()') };
  } finally {
    await conn.end();
  }
}

// MariaDB's extended metadata: a JSON column is a LONGTEXT on the wire and a UUID one a CHAR; with
// MARIADB_CLIENT_EXTENDED_METADATA (mysql2 asks for it where the greeting offers it) their column
// definitions say "json" and "uuid", and mysql2 hands the JSON over parsed.
async function extendedMetadata(conn) {
  await conn.query(`DELETE FROM ${P}json`);
  await conn.query(`INSERT INTO ${P}json VALUES (1, '{"a": [1, 2]}', '6ccd780c-baba-1026-9564-5b8c656024db')`);
  const out = {};
  for (const [how, run] of [['query', (sql) => conn.query(sql)], ['execute', (sql) => conn.execute(sql)]]) {
    const [rows, fields] = await run(`SELECT id, doc, u FROM ${P}json`);
    out[how] = {
      doc: rows[0].doc, type: typeof rows[0].doc, u: rows[0].u,
      fields: fields.map((f) => [f.name, f.extendedTypeName ?? null, f.extendedFormat ?? null]),
    };
  }
  return out;
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: node cases.js mysql://user:password@host:port/database');
    process.exit(2);
  }
  const base = options(process.argv[2]);
  let conn;
  try {
    conn = await mysql.createConnection(base);
    await conn.query(`DROP TABLE IF EXISTS ${P}types, ${P}kv, ${P}blobs, ${P}json`);
    await conn.query(`CREATE TABLE ${P}types (id INT PRIMARY KEY, d DECIMAL(12,4), s VARCHAR(100), n INT NULL, `
      + 't DATETIME(6), b BLOB) DEFAULT CHARSET=utf8mb4');
    await conn.query(`CREATE TABLE ${P}kv (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100)) DEFAULT CHARSET=utf8mb4`);
    await conn.query(`CREATE TABLE ${P}blobs (id INT PRIMARY KEY, b LONGBLOB)`);
    await conn.query(`CREATE TABLE ${P}json (id INT PRIMARY KEY, doc JSON, u UUID)`);
  } catch (e) {
    emit('setup', null, e);
    process.exit(1);
  }
  const cases = [
    ['connect_tls_preferred', () => connectCase(base, true)],
    ['connect_plain', () => connectCase(base, false)],
    ['simple_query', () => values(conn, "SELECT 1 + 1 AS two, 'abc' AS s, DATABASE() AS db, NULL AS nothing")],
    ['prepared_types', () => preparedTypes(conn)],
    ['multi_row', () => values(conn, "SELECT seq, CONCAT('row ', seq) FROM seq_1_to_5")],
    ['transaction', () => transaction(conn)],
    ['savepoint', () => savepoint(conn)],
    ['prepared_reuse', () => preparedReuse(conn)],
    ['pool_concurrency', () => poolConcurrency(base)],
    ['duplicate_key', () => duplicateKey(conn)],
    ['query_timeout', () => queryTimeout(base)],
    ['kill_query', () => killQuery(conn, base)],
    ['large_result', () => largeResult(conn)],
    ['large_packet', () => largePacket(conn)],
    ['session_variable', () => sessionVariable(conn)],
    ['last_insert_id', () => lastInsertId(conn)],
    ['multi_statements', () => multiStatements(base)],
    ['compressed', () => compressed(base)],
    ['ping_reset_change_user', () => pingResetChangeUser(base)],
    ['extended_metadata', () => extendedMetadata(conn)],
  ];
  for (const [name, run] of cases) {
    try {
      emit(name, await run(), null);
    } catch (e) {
      emit(name, null, e);
    }
  }
  conn.destroy();
}

main();
