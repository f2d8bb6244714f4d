// The driver-compatibility cases (tests/drivers/README.md) run with JDBC and
// MariaDB Connector/J (Debian's libmariadb-java), as a Java application would
// use them: DriverManager connections, PreparedStatement (server-side, with
// useServerPrepStmts), setQueryTimeout, and the connector's own pool
// (MariaDbPoolDataSource). Usage: java -cp DIR:mariadb-java-client.jar Drivers
// mysql://user:password@host:port/database. Prints one JSON object per case.
import java.math.BigDecimal;
import java.net.URI;
import java.security.MessageDigest;
import java.sql.*;
import java.time.LocalDateTime;
import java.util.*;
import java.util.concurrent.*;

public class Drivers {
    static final String P = "drv_java_";
    static String host, user, password, database;
    static int port;

    interface Case { Object run() throws Exception; }

    static Connection connect(String options) throws SQLException {
        String url = "jdbc:mariadb://" + host + ":" + port + "/" + database
            + "?connectTimeout=10000&useServerPrepStmts=true" + (options.isEmpty() ? "" : "&" + options);
        return DriverManager.getConnection(url, user, password);
    }

    static List<List<Object>> rows(ResultSet rs) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) row.add(rs.getString(i));
            out.add(row);
        }
        return out;
    }

    static List<List<Object>> query(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) { return rows(rs); }
    }

    static String one(Connection c, String sql) throws SQLException {
        List<List<Object>> r = query(c, sql);
        Object v = r.get(0).get(0);
        return v == null ? "NULL" : v.toString();
    }

    static void exec(Connection c, String... sqls) throws SQLException {
        try (Statement s = c.createStatement()) { for (String sql : sqls) s.execute(sql); }
    }

    static Object connectCase(String options) throws Exception {
        try (Connection c = connect(options)) { return one(c, "SELECT CONCAT('connected as ', CURRENT_USER())"); }
    }

    static Object preparedTypes(Connection c) throws Exception {
        LocalDateTime when = LocalDateTime.of(2024, 2, 29, 13, 45, 6, 123456000);
        try (PreparedStatement ins = c.prepareStatement(
                "INSERT INTO " + P + "types (id, d, s, n, t, b) VALUES (?, ?, ?, ?, ?, ?)")) {
            ins.setInt(1, 1);
            ins.setBigDecimal(2, new BigDecimal("12345678.9012"));
            ins.setString(3, "héllo 🐬 wörld");
            ins.setNull(4, Types.INTEGER);
            ins.setTimestamp(5, Timestamp.valueOf(when));
            ins.setBytes(6, new byte[] {0, 1, 2, (byte) 0xff});
            ins.executeUpdate();
            ins.setInt(1, 2);
            ins.setBigDecimal(2, new BigDecimal("-0.5"));
            ins.setString(3, "");
            ins.setInt(4, 7);
            ins.setTimestamp(5, Timestamp.valueOf(when.minusHours(1)));
            ins.setBytes(6, new byte[0]);
            ins.executeUpdate();
        }
        List<Object> out = new ArrayList<>();
        try (PreparedStatement sel = c.prepareStatement(
                "SELECT id, d, s, n, t, HEX(b), ? AS echo FROM " + P + "types WHERE id >= ? ORDER BY id")) {
            sel.setString(1, "ping 🏓");
            sel.setInt(2, 1);
            try (ResultSet rs = sel.executeQuery()) {
                while (rs.next()) {
                    int n = rs.getInt(4);
                    Object nv = rs.wasNull() ? null : (Object) (long) n;
                    out.add(Arrays.asList((long) rs.getInt(1), rs.getBigDecimal(2).toPlainString(), rs.getString(3), nv,
                        rs.getTimestamp(5).toLocalDateTime().toString(), rs.getString(6), rs.getString(7)));
                }
            }
        }
        return out;
    }

    static Object transaction(Connection c) throws Exception {
        exec(c, "DELETE FROM " + P + "kv");
        c.setAutoCommit(false);
        try {
            exec(c, "INSERT INTO " + P + "kv (v) VALUES ('committed')");
            c.commit();
            exec(c, "INSERT INTO " + P + "kv (v) VALUES ('rolled back')");
            Object inside = query(c, "SELECT v FROM " + P + "kv ORDER BY id");
            c.rollback();
            Map<String, Object> out = new TreeMap<>();
            out.put("inside", inside);
            out.put("after", query(c, "SELECT v FROM " + P + "kv ORDER BY id"));
            return out;
        } finally {
            c.setAutoCommit(true);
        }
    }

    static Object savepoint(Connection c) throws Exception {
        exec(c, "DELETE FROM " + P + "kv");
        c.setAutoCommit(false);
        try {
            exec(c, "INSERT INTO " + P + "kv (v) VALUES ('before')");
            Savepoint sp = c.setSavepoint("sp1");
            exec(c, "INSERT INTO " + P + "kv (v) VALUES ('undone')");
            c.rollback(sp);
            exec(c, "INSERT INTO " + P + "kv (v) VALUES ('after')");
            c.releaseSavepoint(sp);
            c.commit();
        } finally {
            c.setAutoCommit(true);
        }
        return query(c, "SELECT v FROM " + P + "kv ORDER BY id");
    }

    static Object preparedReuse(Connection c) throws Exception {
        long sum = 0;
        String last = null;
        try (PreparedStatement ps = c.prepareStatement("SELECT ? * 2, CONCAT('n', ?)")) {
            for (int i = 0; i < 500; i++) {
                ps.setInt(1, i);
                ps.setInt(2, i);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    sum += rs.getLong(1);
                    last = rs.getString(2);
                }
            }
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("sum", sum);
        out.put("last", last);
        return out;
    }

    static Object poolConcurrency() throws Exception {
        final int workers = 20, rounds = 10;
        String url = "jdbc:mariadb://" + host + ":" + port + "/" + database + "?user=" + user + "&password=" + password
            + "&maxPoolSize=" + workers + "&connectTimeout=10000&useServerPrepStmts=true";
        ExecutorService pool = Executors.newFixedThreadPool(workers);
        try (org.mariadb.jdbc.MariaDbPoolDataSource ds = new org.mariadb.jdbc.MariaDbPoolDataSource(url)) {
            List<Future<Long>> futures = new ArrayList<>();
            for (int w = 0; w < workers; w++) {
                final int worker = w;
                futures.add(pool.submit(() -> {
                    long sum = 0;
                    for (int r = 0; r < rounds; r++) {
                        try (Connection c = ds.getConnection()) {
                            c.setAutoCommit(false);
                            try (PreparedStatement ps = c.prepareStatement("SELECT ? + SLEEP(0.005)")) {
                                ps.setInt(1, worker * rounds + r);
                                try (ResultSet rs = ps.executeQuery()) { rs.next(); sum += rs.getLong(1); }
                            }
                            c.commit();
                            c.setAutoCommit(true);
                        }
                    }
                    return sum;
                }));
            }
            long total = 0;
            for (Future<Long> f : futures) total += f.get(60, TimeUnit.SECONDS);
            Map<String, Object> out = new TreeMap<>();
            out.put("workers", workers);
            out.put("rounds", rounds);
            out.put("sum", total);
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    static Object duplicateKey(Connection c) throws Exception {
        exec(c, "DELETE FROM " + P + "kv", "INSERT INTO " + P + "kv (id, v) VALUES (1, 'first')");
        int code = 0;
        try {
            exec(c, "INSERT INTO " + P + "kv (id, v) VALUES (1, 'again')");
            throw new Exception("the duplicate insert succeeded");
        } catch (SQLIntegrityConstraintViolationException e) {
            code = e.getErrorCode();
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("errno", code);
        out.put("after", one(c, "SELECT v FROM " + P + "kv WHERE id = 1"));
        return out;
    }

    static Object queryTimeout(Connection c) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        try (Statement s = c.createStatement()) {
            s.setQueryTimeout(1);
            s.executeQuery("SELECT SLEEP(3)");
            throw new Exception("SLEEP(3) with a 1 s query timeout returned");
        } catch (SQLTimeoutException e) {
            out.put("errno", e.getErrorCode());
        }
        out.put("after", one(c, "SELECT 'usable'"));
        return out;
    }

    static final String KILL_MARKER = "SELECT SLEEP(5) AS kill_me_java";

    static Object killQuery(Connection c) throws Exception {
        String id = one(c, "SELECT CONNECTION_ID()");
        ExecutorService runner = Executors.newSingleThreadExecutor();
        Map<String, Object> out = new TreeMap<>();
        try (Connection killer = connect("")) {
            Future<String> victim = runner.submit(() -> one(c, KILL_MARKER));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            try (PreparedStatement seen = killer.prepareStatement(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = ?")) {
                seen.setString(1, KILL_MARKER);
                while (true) {
                    try (ResultSet rs = seen.executeQuery()) { rs.next(); if (rs.getInt(1) > 0) break; }
                    if (System.nanoTime() > deadline) throw new Exception("the query to kill never showed in the process list");
                    Thread.sleep(10);
                }
            }
            exec(killer, "KILL QUERY " + id);
            try {
                out.put("value", victim.get(10, TimeUnit.SECONDS));
                out.put("errno", 0);
            } catch (ExecutionException e) {
                out.put("value", "NULL");
                out.put("errno", e.getCause() instanceof SQLException ? ((SQLException) e.getCause()).getErrorCode() : -1);
            }
        } finally {
            runner.shutdownNow();
        }
        out.put("after", one(c, "SELECT 'usable'"));
        return out;
    }

    static Object largeResult(Connection c) throws Exception {
        long count = 0, sum = 0, chars = 0;
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT seq, REPEAT('x', seq % 100) FROM seq_1_to_10000")) {
            while (rs.next()) { count++; sum += rs.getLong(1); chars += rs.getString(2).length(); }
        }
        Map<String, Object> out = new TreeMap<>();
        out.put("rows", count);
        out.put("sum", sum);
        out.put("chars", chars);
        return out;
    }

    static Object largePacket(Connection c) throws Exception {
        byte[] blob = new byte[4 << 20];
        for (int i = 0; i < blob.length; i++) blob[i] = (byte) (i * 7 % 251);
        try (PreparedStatement ps = c.prepareStatement("REPLACE INTO " + P + "blobs (id, b) VALUES (?, ?)")) {
            ps.setInt(1, 1);
            ps.setBytes(2, blob);
            ps.executeUpdate();
        }
        byte[] back;
        try (PreparedStatement ps = c.prepareStatement("SELECT b FROM " + P + "blobs WHERE id = ?")) {
            ps.setInt(1, 1);
            try (ResultSet rs = ps.executeQuery()) { rs.next(); back = rs.getBytes(1); }
        }
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(back);
        StringBuilder hex = new StringBuilder();
        for (byte b : digest) hex.append(String.format("%02x", b));
        Map<String, Object> out = new TreeMap<>();
        out.put("bytes", back.length);
        out.put("same", Arrays.equals(blob, back));
        out.put("sha256", hex.toString());
        return out;
    }

    static Object sessionVariable(Connection c) throws Exception {
        exec(c, "SET time_zone = '+05:30'", "SET SESSION sql_mode = 'ANSI_QUOTES'", "SET @greeting = 'hi 🐬'");
        return query(c, "SELECT @@time_zone, @@sql_mode, @greeting");
    }

    static Object lastInsertId(Connection c) throws Exception {
        exec(c, "TRUNCATE TABLE " + P + "kv");
        Map<String, Object> out = new TreeMap<>();
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + P + "kv (v) VALUES (?), (?)",
                Statement.RETURN_GENERATED_KEYS)) {
            ps.setString(1, "a");
            ps.setString(2, "b");
            ps.executeUpdate();
            try (ResultSet keys = ps.getGeneratedKeys()) { keys.next(); out.put("driver", keys.getLong(1)); }
        }
        out.put("sql", one(c, "SELECT LAST_INSERT_ID()"));
        return out;
    }

    // executeBatch: Connector/J sends the rows as one COM_STMT_BULK_EXECUTE
    // (useBulkStmts, where the server offers MariaDB's bulk operations), or
    // pipelines the executions (useBatchMultiSend).
    static Object batch(String options) throws Exception {
        try (Connection b = connect(options)) {
            exec(b, "DELETE FROM " + P + "kv");
            int[] counts;
            try (PreparedStatement ps = b.prepareStatement("INSERT INTO " + P + "kv (id, v) VALUES (?, ?)")) {
                for (int i = 1; i <= 200; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "row " + i + " 🐬");
                    ps.addBatch();
                }
                counts = ps.executeBatch();
            }
            Map<String, Object> out = new TreeMap<>();
            out.put("batches", counts.length);
            out.put("rows", query(b, "SELECT COUNT(*), SUM(id), MAX(v) FROM " + P + "kv"));
            return out;
        }
    }

    // executeBatch of five rows whose third repeats the first's key. As one COM_STMT_BULK_EXECUTE
    // (useBulkStmts, where the server offers bulk operations) the batch is one statement and keeps
    // no row; as separate executions it keeps the other four. Either way the same as directly.
    static Object batchFailure(String options) throws Exception {
        try (Connection b = connect(options)) {
            exec(b, "DELETE FROM " + P + "kv");
            Map<String, Object> out = new TreeMap<>();
            try (PreparedStatement ps = b.prepareStatement("INSERT INTO " + P + "kv (id, v) VALUES (?, ?)")) {
                for (int id : new int[] {1, 2, 1, 4, 5}) {
                    ps.setInt(1, id);
                    ps.setString(2, "row " + id);
                    ps.addBatch();
                }
                try {
                    out.put("counts", Arrays.toString(ps.executeBatch()));
                } catch (BatchUpdateException e) {
                    out.put("error", e.getErrorCode());
                    out.put("counts", Arrays.toString(e.getUpdateCounts()));
                }
            }
            out.put("rows", query(b, "SELECT id FROM " + P + "kv ORDER BY id"));
            return out;
        }
    }

    // Session characteristics through JDBC's setters, read back by the connector and by SQL.
    static Object isolationAndReadOnly() throws Exception {
        try (Connection c = connect("")) {
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            c.setReadOnly(true);
            Map<String, Object> out = new TreeMap<>();
            out.put("driver", c.getTransactionIsolation());
            out.put("sql", query(c, "SELECT @@tx_isolation, @@tx_read_only"));
            c.setReadOnly(false);
            c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            out.put("after", query(c, "SELECT @@tx_isolation, @@tx_read_only"));
            return out;
        }
    }

    // The compressed protocol (useCompression): a 4 MiB blob both ways and 10,000 rows; isValid() is a COM_PING.
    static Object compressed() throws Exception {
        try (Connection c = connect("useCompression=true")) {
            Map<String, Object> out = new TreeMap<>();
            out.put("valid", c.isValid(5));
            out.put("blob", largePacket(c));
            out.put("rows", largeResult(c));
            return out;
        }
    }

    static Object multiStatements() throws Exception {
        try (Connection c = connect("allowMultiQueries=true"); Statement s = c.createStatement()) {
            List<Object> sets = new ArrayList<>();
            boolean isResult = s.execute("SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; SELECT 3");
            while (isResult || s.getUpdateCount() != -1) {
                if (isResult) try (ResultSet rs = s.getResultSet()) { sets.add(rows(rs)); }
                isResult = s.getMoreResults();
            }
            Map<String, Object> out = new TreeMap<>();
            out.put("sets", sets);
            out.put("after", one(c, "SELECT 'in sync'"));
            return out;
        }
    }

    // --- output: a small JSON writer for maps, lists, strings, numbers, booleans and null

    static String json(Object v) {
        if (v == null) return "null";
        if (v instanceof Boolean || v instanceof Number) return v.toString();
        if (v instanceof Map) {
            StringJoiner j = new StringJoiner(",", "{", "}");
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) j.add(json(e.getKey().toString()) + ":" + json(e.getValue()));
            return j.toString();
        }
        if (v instanceof List) {
            StringJoiner j = new StringJoiner(",", "[", "]");
            for (Object o : (List<?>) v) j.add(json(o));
            return j.toString();
        }
        StringBuilder b = new StringBuilder("\"");
        for (char ch : v.toString().toCharArray()) {
            if (ch == '"' || ch == '\\') b.append('\\').append(ch);
            else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
        }
        return b.append('"').toString();
    }

    static void emit(String name, Object result, Throwable error) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("case", name);
        out.put("ok", error == null);
        out.put("result", result);
        out.put("error", error == null ? null : error.getClass().getSimpleName() + ": " + error.getMessage());
        System.out.println(json(out));
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: Drivers mysql://user:password@host:port/database");
            System.exit(2);
        }
        URI uri = new URI(args[0]);
        host = uri.getHost();
        port = uri.getPort();
        String[] userInfo = uri.getUserInfo().split(":", 2);
        user = userInfo[0];
        password = userInfo.length > 1 ? userInfo[1] : "";
        database = uri.getPath().substring(1);
        Connection c;
        try {
            c = connect("");
            exec(c, "DROP TABLE IF EXISTS " + P + "types, " + P + "kv, " + P + "blobs",
                "CREATE TABLE " + P + "types (id INT PRIMARY KEY, d DECIMAL(12,4), s VARCHAR(100), n INT NULL, "
                    + "t DATETIME(6), b BLOB) DEFAULT CHARSET=utf8mb4",
                "CREATE TABLE " + P + "kv (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100)) DEFAULT CHARSET=utf8mb4",
                "CREATE TABLE " + P + "blobs (id INT PRIMARY KEY, b LONGBLOB)");
        } catch (Exception e) {
            emit("setup", null, e);
            System.exit(1);
            return;
        }
        final Connection conn = c;
        Map<String, Case> cases = new LinkedHashMap<>();
        cases.put("connect_tls_preferred", () -> connectCase("useSsl=true&trustServerCertificate=true"));
        cases.put("connect_plain", () -> connectCase("useSsl=false"));
        cases.put("simple_query", () -> query(conn, "SELECT 1 + 1 AS two, 'abc' AS s, DATABASE() AS db, NULL AS nothing"));
        cases.put("prepared_types", () -> preparedTypes(conn));
        cases.put("multi_row", () -> query(conn, "SELECT seq, CONCAT('row ', seq) FROM seq_1_to_5"));
        cases.put("transaction", () -> transaction(conn));
        cases.put("savepoint", () -> savepoint(conn));
        cases.put("prepared_reuse", () -> preparedReuse(conn));
        cases.put("pool_concurrency", Drivers::poolConcurrency);
        cases.put("duplicate_key", () -> duplicateKey(conn));
        cases.put("query_timeout", () -> queryTimeout(conn));
        cases.put("kill_query", () -> killQuery(conn));
        cases.put("large_result", () -> largeResult(conn));
        cases.put("large_packet", () -> largePacket(conn));
        cases.put("session_variable", () -> sessionVariable(conn));
        cases.put("last_insert_id", () -> lastInsertId(conn));
        cases.put("multi_statements", Drivers::multiStatements);
        cases.put("compressed", Drivers::compressed);
        cases.put("isolation_and_read_only", Drivers::isolationAndReadOnly);
        cases.put("batch_bulk", () -> batch("useBulkStmts=true"));  // (off by default in Connector/J 2.7)
        cases.put("batch_pipelined", () -> batch("useBulkStmts=false"));
        cases.put("batch_text_rewritten", () -> batch("useServerPrepStmts=false&rewriteBatchedStatements=true"));
        cases.put("batch_bulk_failure", () -> batchFailure("useBulkStmts=true"));
        cases.put("batch_pipelined_failure", () -> batchFailure("useBulkStmts=false"));
        for (Map.Entry<String, Case> e : cases.entrySet()) {
            try {
                emit(e.getKey(), e.getValue().run(), null);
            } catch (Throwable t) {
                emit(e.getKey(), null, t);
            }
        }
        conn.close();
    }
}
