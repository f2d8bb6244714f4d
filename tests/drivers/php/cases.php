<?php
// The driver-compatibility cases (tests/drivers/README.md) run with PHP's two
// MySQL APIs over mysqlnd, as a PHP application would use them: mysqli (text
// queries, prepared statements with bind_param and send_long_data, async
// queries with mysqli_poll for concurrency, multi_query, a read timeout) for
// the whole list, and PDO (native prepares, transactions, savepoints, errors,
// lastInsertId, multi-statement queries) for the cases its API differs in.
// Usage: php cases.php mysql://user:password@host:port/database
// Prints one JSON object per case on stdout.

const P = 'drv_php_';
const KILL_MARKER = 'SELECT SLEEP(5) AS kill_me_php';

mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

function target(string $raw): array {
    $u = parse_url($raw);
    if ($u === false || ($u['scheme'] ?? '') !== 'mysql') {
        fwrite(STDERR, "usage: php cases.php mysql://user:password@host:port/database\n");
        exit(2);
    }
    return ['host' => $u['host'], 'port' => $u['port'] ?? 3306, 'user' => urldecode($u['user'] ?? ''),
            'password' => urldecode($u['pass'] ?? ''), 'database' => ltrim($u['path'] ?? '', '/')];
}

function emit(string $name, $result, ?Throwable $error): void {
    echo json_encode(['case' => $name, 'ok' => $error === null, 'result' => $error ? null : $result,
                      'error' => $error ? get_class($error) . ' ' . $error->getCode() . ': ' . $error->getMessage() : null],
                     JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR), "\n";
}

// ---- mysqli

function my(array $t, int $flags = 0, array $options = []): mysqli {
    $m = mysqli_init();
    $m->options(MYSQLI_OPT_CONNECT_TIMEOUT, 10);
    foreach ($options as $option => $value) {
        $m->options($option, $value);
    }
    $m->real_connect($t['host'], $t['user'], $t['password'], $t['database'], $t['port'], null, $flags);
    $m->set_charset('utf8mb4');
    return $m;
}

function rows(mysqli $m, string $sql): array {
    return $m->query($sql)->fetch_all(MYSQLI_NUM);
}

function one(mysqli $m, string $sql): string {
    return rows($m, $sql)[0][0] ?? 'NULL';
}

function connect_case(array $t, bool $tls) {
    $m = $tls ? my($t, MYSQLI_CLIENT_SSL | MYSQLI_CLIENT_SSL_DONT_VERIFY_SERVER_CERT) : my($t);
    try {
        return one($m, "SELECT CONCAT('connected as ', CURRENT_USER())");
    } finally {
        $m->close();
    }
}

function prepared_types(mysqli $m) {
    $ins = $m->prepare('INSERT INTO ' . P . 'types (id, d, s, n, t, b) VALUES (?, ?, ?, ?, ?, ?)');
    $rows = [[1, '12345678.9012', 'héllo 🐬 wörld', null, '2024-02-29 13:45:06.123456', "\x00\x01\x02\xff"],
             [2, '-0.5', '', 7, '2024-02-29 12:45:06.123456', '']];
    foreach ($rows as [$id, $d, $s, $n, $when, $blob]) {
        $ins->bind_param('issisb', $id, $d, $s, $n, $when, $none);
        $ins->send_long_data(5, $blob);
        $ins->execute();
    }
    $ins->close();
    $sel = $m->prepare('SELECT id, d, s, n, t, HEX(b), ? AS echo FROM ' . P . 'types WHERE id >= ? ORDER BY id');
    $echo = 'ping 🏓';
    $from = 1;
    $sel->bind_param('si', $echo, $from);
    $sel->execute();
    $out = $sel->get_result()->fetch_all(MYSQLI_NUM);
    $sel->close();
    return $out;
}

function kv(mysqli $m): array {
    return rows($m, 'SELECT v FROM ' . P . 'kv ORDER BY id');
}

function transaction(mysqli $m) {
    $m->query('DELETE FROM ' . P . 'kv');
    $m->begin_transaction();
    $m->query('INSERT INTO ' . P . "kv (v) VALUES ('committed')");
    $m->commit();
    $m->begin_transaction();
    $m->query('INSERT INTO ' . P . "kv (v) VALUES ('rolled back')");
    $inside = kv($m);
    $m->rollback();
    return ['inside' => $inside, 'after' => kv($m)];
}

function savepoint(mysqli $m) {
    $m->query('DELETE FROM ' . P . 'kv');
    $m->begin_transaction();
    $m->query('INSERT INTO ' . P . "kv (v) VALUES ('before')");
    $m->savepoint('sp1');
    $m->query('INSERT INTO ' . P . "kv (v) VALUES ('undone')");
    $m->query('ROLLBACK TO SAVEPOINT sp1');
    $m->query('INSERT INTO ' . P . "kv (v) VALUES ('after')");
    $m->release_savepoint('sp1');
    $m->commit();
    return kv($m);
}

function prepared_reuse(mysqli $m) {
    $st = $m->prepare("SELECT ? * 2, CONCAT('n', ?)");
    $sum = 0;
    $last = null;
    for ($i = 0; $i < 500; $i++) {
        $st->bind_param('ii', $i, $i);
        $st->execute();
        [$doubled, $last] = $st->get_result()->fetch_row();
        $sum += $doubled;
    }
    $st->close();
    return ['sum' => $sum, 'last' => $last];
}

// 20 connections, each running 10 transactions, all at once with async queries.
function pool_concurrency(array $t) {
    $workers = 20;
    $rounds = 10;
    $conns = [];
    $steps = [];
    for ($w = 0; $w < $workers; $w++) {
        $conns[$w] = my($t);
        $steps[$w] = [];
        for ($r = 0; $r < $rounds; $r++) {
            array_push($steps[$w], 'START TRANSACTION', 'SELECT ' . ($w * $rounds + $r) . ' + SLEEP(0.005)', 'COMMIT');
        }
        $conns[$w]->query(array_shift($steps[$w]), MYSQLI_ASYNC);
    }
    $sum = 0;
    $busy = $conns;
    $deadline = microtime(true) + 60;
    while ($busy) {
        if (microtime(true) > $deadline) {
            throw new RuntimeException('the concurrent transactions did not finish within 60 s');
        }
        $read = $error = $reject = array_values($busy);
        if (mysqli_poll($read, $error, $reject, 1) === 0) {
            continue;
        }
        foreach ($read as $conn) {
            $w = array_search($conn, $conns, true);
            $result = $conn->reap_async_query();
            if ($result instanceof mysqli_result) {
                $sum += (int) $result->fetch_row()[0];
                $result->free();
            }
            if ($steps[$w]) {
                $conn->query(array_shift($steps[$w]), MYSQLI_ASYNC);
            } else {
                unset($busy[$w]);
            }
        }
        if ($error || $reject) {
            throw new RuntimeException('mysqli_poll reported a connection in error');
        }
    }
    foreach ($conns as $conn) {
        $conn->close();
    }
    return ['workers' => $workers, 'rounds' => $rounds, 'sum' => $sum];
}

function duplicate_key(mysqli $m) {
    $m->query('DELETE FROM ' . P . 'kv');
    $m->query('INSERT INTO ' . P . "kv (id, v) VALUES (1, 'first')");
    try {
        $m->query('INSERT INTO ' . P . "kv (id, v) VALUES (1, 'again')");
        throw new RuntimeException('the duplicate insert succeeded');
    } catch (mysqli_sql_exception $e) {
        $errno = $e->getCode();
    }
    return ['errno' => $errno, 'after' => one($m, 'SELECT v FROM ' . P . 'kv WHERE id = 1')];
}

// mysqlnd's read timeout: the query fails with 2006 and the connection is gone.
function query_timeout(array $t) {
    $m = my($t, 0, [MYSQLI_OPT_READ_TIMEOUT => 1]);
    try {
        $m->query('SELECT SLEEP(3)');
        throw new RuntimeException('SLEEP(3) with a 1 s read timeout returned');
    } catch (mysqli_sql_exception $e) {
        $errno = $e->getCode();
    }
    $again = my($t);
    try {
        return ['errno' => $errno, 'after' => one($again, "SELECT 'usable'")];
    } finally {
        $again->close();
    }
}

function kill_query(mysqli $m, array $t) {
    $id = one($m, 'SELECT CONNECTION_ID()');
    $killer = my($t);
    $m->query(KILL_MARKER, MYSQLI_ASYNC);
    $seen = $killer->prepare('SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = ?');
    $marker = KILL_MARKER;
    $seen->bind_param('s', $marker);
    $deadline = microtime(true) + 5;
    while (true) {
        $seen->execute();
        if ($seen->get_result()->fetch_row()[0] > 0) {
            break;
        }
        if (microtime(true) > $deadline) {
            throw new RuntimeException('the query to kill never showed in the process list');
        }
        usleep(10000);
    }
    $killer->query("KILL QUERY $id");
    $killer->close();
    $out = ['value' => 'NULL', 'errno' => 0];
    try {
        $result = $m->reap_async_query();
        $out['value'] = (string) $result->fetch_row()[0];
    } catch (mysqli_sql_exception $e) {
        $out['errno'] = $e->getCode();
    }
    $out['after'] = one($m, "SELECT 'usable'");
    return $out;
}

function large_result(mysqli $m) {
    $result = $m->query("SELECT seq, REPEAT('x', seq % 100) FROM seq_1_to_10000", MYSQLI_USE_RESULT);
    $count = $sum = $chars = 0;
    while ($row = $result->fetch_row()) {
        $count++;
        $sum += (int) $row[0];
        $chars += strlen($row[1]);
    }
    $result->free();
    return ['rows' => $count, 'sum' => $sum, 'chars' => $chars];
}

function test_blob(): string {
    $blob = '';
    for ($i = 0; $i < (4 << 20); $i++) {
        $blob .= chr(($i * 7) % 251);
    }
    return $blob;
}

// 4 MiB up through COM_STMT_SEND_LONG_DATA in 1 MiB chunks, back in one row.
function large_packet(mysqli $m) {
    $blob = test_blob();
    $st = $m->prepare('REPLACE INTO ' . P . 'blobs (id, b) VALUES (1, ?)');
    $none = null;
    $st->bind_param('b', $none);
    foreach (str_split($blob, 1 << 20) as $chunk) {
        $st->send_long_data(0, $chunk);
    }
    $st->execute();
    $st->close();
    $back = one($m, 'SELECT b FROM ' . P . 'blobs WHERE id = 1');
    return ['bytes' => strlen($back), 'same' => $back === $blob, 'sha256' => hash('sha256', $back)];
}

function session_variable(mysqli $m) {
    $m->query("SET time_zone = '+05:30'");
    $m->query("SET SESSION sql_mode = 'ANSI_QUOTES'");
    $m->query("SET @greeting = 'hi 🐬'");
    return rows($m, 'SELECT @@time_zone, @@sql_mode, @greeting');
}

function last_insert_id(mysqli $m) {
    $m->query('TRUNCATE TABLE ' . P . 'kv');
    $st = $m->prepare('INSERT INTO ' . P . 'kv (v) VALUES (?), (?)');
    $a = 'a';
    $b = 'b';
    $st->bind_param('ss', $a, $b);
    $st->execute();
    $out = ['driver' => $st->insert_id, 'connection' => $m->insert_id, 'sql' => one($m, 'SELECT LAST_INSERT_ID()')];
    $st->close();
    return $out;
}

function multi_statements(mysqli $m) {
    $m->multi_query("SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; SELECT 3");
    $sets = [];
    do {
        if ($result = $m->store_result()) {
            $sets[] = $result->fetch_all(MYSQLI_NUM);
            $result->free();
        }
    } while ($m->next_result());
    return ['sets' => $sets, 'after' => one($m, "SELECT 'in sync'")];
}

// A server-side cursor: mysqlnd fetches each row with a COM_STMT_FETCH, and a
// COM_STMT_RESET, re-execution and a second cursor on the same statement follow.
function server_cursor(mysqli $m, array $t) {
    $st = $m->stmt_init();
    $st->prepare('SELECT seq, CONCAT(?, seq) FROM seq_1_to_1000 WHERE seq > ?');
    $st->attr_set(MYSQLI_STMT_ATTR_CURSOR_TYPE, MYSQLI_CURSOR_TYPE_READ_ONLY);
    $prefix = 'r';
    $above = 0;
    $st->bind_param('si', $prefix, $above);
    $st->execute();
    $st->bind_result($n, $label);
    $count = $sum = 0;
    while ($st->fetch()) {
        $count++;
        $sum += $n;
        if ($count === 500) {  // another connection works while the cursor is open
            $other = my($t);
            $other_sum = one($other, 'SELECT SUM(seq) FROM seq_1_to_100');
            $other->close();
        }
    }
    $st->reset();
    $above = 990;
    $st->execute();
    $tail = [];
    while ($st->fetch()) {
        $tail[] = $label;
    }
    $st->close();
    return ['rows' => $count, 'sum' => $sum, 'other' => $other_sum ?? null, 'tail' => $tail,
            'after' => one($m, "SELECT 'usable'")];
}

// A persistent connection ("p:" host), as PHP-FPM applications use them:
// reopened from mysqli's cache, which resets it with COM_CHANGE_USER.
function persistent_connection(array $t) {
    $persistent = ['host' => 'p:' . $t['host']] + $t;
    $first = my($persistent);
    $first_id = one($first, 'SELECT CONNECTION_ID()');
    $first->query("SET @left_behind = 'x'");
    $first->close();
    $second = my($persistent);
    try {
        return ['same_connection' => one($second, 'SELECT CONNECTION_ID()') === $first_id,
                'variable_after_reuse' => one($second, 'SELECT @left_behind'),
                'query' => one($second, "SELECT CONCAT('still ', 'usable')")];
    } finally {
        $second->close();
    }
}

// ---- PDO

function pdo(array $t, array $options = []): PDO {
    $dsn = "mysql:host={$t['host']};port={$t['port']};dbname={$t['database']};charset=utf8mb4";
    return new PDO($dsn, $t['user'], $t['password'], $options + [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => false,
        PDO::ATTR_TIMEOUT => 10,
    ]);
}

function pdo_connect(array $t, bool $tls) {
    $options = $tls ? [PDO::MYSQL_ATTR_SSL_CAPATH => '/etc/ssl/certs', PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => false] : [];
    return pdo($t, $options)->query("SELECT CONCAT('connected as ', CURRENT_USER())")->fetchColumn();
}

function pdo_prepared_types(PDO $db) {
    $db->exec('DELETE FROM ' . P . 'types');
    $ins = $db->prepare('INSERT INTO ' . P . 'types (id, d, s, n, t, b) VALUES (:id, :d, :s, :n, :t, :b)');
    $ins->bindValue(':id', 1, PDO::PARAM_INT);
    $ins->bindValue(':d', '12345678.9012');
    $ins->bindValue(':s', 'héllo 🐬 wörld');
    $ins->bindValue(':n', null, PDO::PARAM_NULL);
    $ins->bindValue(':t', '2024-02-29 13:45:06.123456');
    $ins->bindValue(':b', "\x00\x01\x02\xff", PDO::PARAM_LOB);
    $ins->execute();
    $sel = $db->prepare('SELECT id, d, s, n, t, HEX(b), ? AS echo FROM ' . P . 'types WHERE id >= ? ORDER BY id');
    $sel->execute(['ping 🏓', 1]);
    return $sel->fetchAll(PDO::FETCH_NUM);
}

function pdo_transaction(PDO $db) {
    $db->exec('DELETE FROM ' . P . 'kv');
    $ins = $db->prepare('INSERT INTO ' . P . 'kv (v) VALUES (?)');
    $db->beginTransaction();
    $ins->execute(['committed']);
    $db->commit();
    $db->beginTransaction();
    $ins->execute(['before savepoint']);
    $db->exec('SAVEPOINT sp1');
    $ins->execute(['undone']);
    $db->exec('ROLLBACK TO SAVEPOINT sp1');
    $inside = $db->query('SELECT v FROM ' . P . 'kv ORDER BY id')->fetchAll(PDO::FETCH_COLUMN);
    $db->rollBack();
    return ['inside' => $inside, 'after' => $db->query('SELECT v FROM ' . P . 'kv ORDER BY id')->fetchAll(PDO::FETCH_COLUMN)];
}

function pdo_duplicate_key(PDO $db) {
    $db->exec('DELETE FROM ' . P . 'kv');
    $ins = $db->prepare('INSERT INTO ' . P . 'kv (id, v) VALUES (?, ?)');
    $ins->execute([1, 'first']);
    try {
        $ins->execute([1, 'again']);
        throw new RuntimeException('the duplicate insert succeeded');
    } catch (PDOException $e) {
        $info = $e->errorInfo;
    }
    return ['sqlstate' => $info[0], 'errno' => $info[1],
            'after' => $db->query('SELECT v FROM ' . P . 'kv WHERE id = 1')->fetchColumn()];
}

function pdo_last_insert_id(PDO $db) {
    $db->exec('TRUNCATE TABLE ' . P . 'kv');
    $db->prepare('INSERT INTO ' . P . 'kv (v) VALUES (?), (?)')->execute(['a', 'b']);
    return ['driver' => $db->lastInsertId(), 'sql' => $db->query('SELECT LAST_INSERT_ID()')->fetchColumn()];
}

// A multi-statement string goes as one COM_QUERY only with emulated prepares.
function pdo_multi_statements(array $t) {
    $db = pdo($t, [PDO::ATTR_EMULATE_PREPARES => true]);
    $st = $db->query("SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; SELECT 3");
    $sets = [];
    do {
        $sets[] = $st->fetchAll(PDO::FETCH_NUM);
    } while ($st->nextRowset());
    $st->closeCursor();
    return ['sets' => $sets, 'after' => $db->query("SELECT 'in sync'")->fetchColumn()];
}

function main(array $argv): void {
    if (count($argv) !== 2) {
        fwrite(STDERR, "usage: php cases.php mysql://user:password@host:port/database\n");
        exit(2);
    }
    $t = target($argv[1]);
    try {
        $m = my($t);
        $m->query('DROP TABLE IF EXISTS ' . P . 'types, ' . P . 'kv, ' . P . 'blobs');
        $m->query('CREATE TABLE ' . P . 'types (id INT PRIMARY KEY, d DECIMAL(12,4), s VARCHAR(100), n INT NULL, '
                  . 't DATETIME(6), b BLOB) DEFAULT CHARSET=utf8mb4');
        $m->query('CREATE TABLE ' . P . 'kv (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100)) DEFAULT CHARSET=utf8mb4');
        $m->query('CREATE TABLE ' . P . 'blobs (id INT PRIMARY KEY, b LONGBLOB)');
    } catch (Throwable $e) {
        emit('setup', null, $e);
        exit(1);
    }
    $db = null;
    $pdo = function () use ($t, &$db): PDO { return $db ??= pdo($t); };
    $cases = [
        'connect_tls_preferred' => fn() => connect_case($t, true),
        'connect_plain' => fn() => connect_case($t, false),
        'simple_query' => fn() => rows($m, "SELECT 1 + 1 AS two, 'abc' AS s, DATABASE() AS db, NULL AS nothing"),
        'prepared_types' => fn() => prepared_types($m),
        'multi_row' => fn() => rows($m, "SELECT seq, CONCAT('row ', seq) FROM seq_1_to_5"),
        'transaction' => fn() => transaction($m),
        'savepoint' => fn() => savepoint($m),
        'prepared_reuse' => fn() => prepared_reuse($m),
        'pool_concurrency' => fn() => pool_concurrency($t),
        'duplicate_key' => fn() => duplicate_key($m),
        'query_timeout' => fn() => query_timeout($t),
        'kill_query' => fn() => kill_query($m, $t),
        'large_result' => fn() => large_result($m),
        'large_packet' => fn() => large_packet($m),
        'session_variable' => fn() => session_variable($m),
        'last_insert_id' => fn() => last_insert_id($m),
        'multi_statements' => fn() => multi_statements($m),
        'server_cursor' => fn() => server_cursor($m, $t),
        'persistent_connection' => fn() => persistent_connection($t),
        'pdo_connect_tls_preferred' => fn() => pdo_connect($t, true),
        'pdo_connect_plain' => fn() => pdo_connect($t, false),
        'pdo_prepared_types' => fn() => pdo_prepared_types($pdo()),
        'pdo_transaction_savepoint' => fn() => pdo_transaction($pdo()),
        'pdo_duplicate_key' => fn() => pdo_duplicate_key($pdo()),
        'pdo_last_insert_id' => fn() => pdo_last_insert_id($pdo()),
        'pdo_multi_statements' => fn() => pdo_multi_statements($t),
    ];
    foreach ($cases as $name => $run) {
        try {
            emit($name, $run(), null);
        } catch (Throwable $e) {
            emit($name, null, $e);
        }
    }
}

main($argv);
