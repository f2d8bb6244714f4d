// The driver-compatibility cases (tests/drivers/README.md) run with Go's
// database/sql and go-sql-driver/mysql, as a Go application would use them:
// a *sql.DB pool, db.Conn for one connection's session, contexts for
// timeouts. Usage: drivers-go mysql://user:password@host:port/database
// Prints one JSON object per case on stdout.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

const prefix = "drv_go_"

type target struct{ user, password, addr, database string }

func parseTarget(raw string) target {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" {
		fmt.Fprintf(os.Stderr, "usage: drivers-go mysql://user:password@host:port/database (got %q)\n", raw)
		os.Exit(2)
	}
	password, _ := u.User.Password()
	return target{u.User.Username(), password, u.Host, strings.TrimPrefix(u.Path, "/")}
}

// dsn builds go-sql-driver's DSN; options are extra key=value pairs.
func (t target) dsn(options ...string) string {
	base := []string{"charset=utf8mb4", "collation=utf8mb4_general_ci", "parseTime=true", "timeout=10s"}
	return fmt.Sprintf("%s:%s@tcp(%s)/%s?%s", t.user, t.password, t.addr, t.database,
		strings.Join(append(base, options...), "&"))
}

func emit(name string, result any, err error) {
	out := map[string]any{"case": name, "ok": err == nil, "result": result, "error": nil}
	if err != nil {
		out["error"] = err.Error()
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func errno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

var ctx = context.Background()

// one runs a one-column, one-row query and returns the value as a string.
func one(q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) (string, error) {
	var v sql.NullString
	err := q.QueryRowContext(ctx, query, args...).Scan(&v)
	if !v.Valid {
		return "NULL", err
	}
	return v.String, err
}

func rowsAsStrings(rows *sql.Rows) ([][]any, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]any
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(cols))
		for i, b := range raw {
			if b != nil {
				row[i] = string(b)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func setup(db *sql.DB) error {
	for _, stmt := range []string{
		"DROP TABLE IF EXISTS " + prefix + "types, " + prefix + "kv, " + prefix + "blobs",
		"CREATE TABLE " + prefix + "types (id INT PRIMARY KEY, d DECIMAL(12,4), s VARCHAR(100), n INT NULL, " +
			"t DATETIME(6), b BLOB) DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE " + prefix + "kv (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100)) DEFAULT CHARSET=utf8mb4",
		"CREATE TABLE " + prefix + "blobs (id INT PRIMARY KEY, b LONGBLOB)",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

func connectCase(t target, tls string) (any, error) {
	db, err := sql.Open("mysql", t.dsn("tls="+tls))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return one(db, "SELECT CONCAT('connected as ', CURRENT_USER())")
}

// tlsConfigCase connects with a registered tls.Config (TLS required) whose
// VerifyConnection hook records that a handshake happened: "preferred" would
// fall back to plain TCP without saying so.
func tlsConfigCase(t target) (any, error) {
	handshakes := 0
	err := mysql.RegisterTLSConfig("probe", &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(tls.ConnectionState) error {
			handshakes++
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", t.dsn("tls=probe"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	who, err := one(db, "SELECT CONCAT('connected as ', CURRENT_USER())")
	return map[string]any{"who": who, "handshakes": handshakes}, err
}

func simpleQuery(db *sql.DB) (any, error) {
	rows, err := db.QueryContext(ctx, "SELECT 1 + 1 AS two, 'abc' AS s, DATABASE() AS db, NULL AS nothing")
	if err != nil {
		return nil, err
	}
	return rowsAsStrings(rows)
}

func preparedTypes(db *sql.DB) (any, error) {
	ins, err := db.PrepareContext(ctx, "INSERT INTO "+prefix+"types (id, d, s, n, t, b) VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		return nil, err
	}
	defer ins.Close()
	when := time.Date(2024, 2, 29, 13, 45, 6, 123456000, time.UTC)
	if _, err := ins.ExecContext(ctx, 1, "12345678.9012", "héllo 🐬 wörld", nil, when, []byte{0, 1, 2, 0xff}); err != nil {
		return nil, err
	}
	if _, err := ins.ExecContext(ctx, 2, "-0.5", "", 7, when.Add(-time.Hour), []byte{}); err != nil {
		return nil, err
	}
	sel, err := db.PrepareContext(ctx, "SELECT id, d, s, n, t, HEX(b), ? AS echo FROM "+prefix+"types WHERE id >= ? ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer sel.Close()
	var out [][]any
	rows, err := sel.QueryContext(ctx, "ping 🏓", 1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var d, s, hexb, echo string
		var n sql.NullInt64
		var t time.Time
		if err := rows.Scan(&id, &d, &s, &n, &t, &hexb, &echo); err != nil {
			return nil, err
		}
		var nv any
		if n.Valid {
			nv = n.Int64
		}
		out = append(out, []any{id, d, s, nv, t.UTC().Format("2006-01-02 15:04:05.000000"), hexb, echo})
	}
	return out, rows.Err()
}

func multiRow(db *sql.DB) (any, error) {
	rows, err := db.QueryContext(ctx, "SELECT seq, CONCAT('row ', seq) FROM seq_1_to_5")
	if err != nil {
		return nil, err
	}
	return rowsAsStrings(rows)
}

func kvValues(q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([][]any, error) {
	rows, err := q.QueryContext(ctx, "SELECT v FROM "+prefix+"kv ORDER BY id")
	if err != nil {
		return nil, err
	}
	return rowsAsStrings(rows)
}

func transaction(db *sql.DB) (any, error) {
	if _, err := db.ExecContext(ctx, "DELETE FROM "+prefix+"kv"); err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+prefix+"kv (v) VALUES (?)", "committed"); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+prefix+"kv (v) VALUES (?)", "rolled back"); err != nil {
		return nil, err
	}
	inside, err := kvValues(tx)
	if err != nil {
		return nil, err
	}
	if err := tx.Rollback(); err != nil {
		return nil, err
	}
	after, err := kvValues(db)
	return map[string]any{"inside": inside, "after": after}, err
}

func savepoint(db *sql.DB) (any, error) {
	if _, err := db.ExecContext(ctx, "DELETE FROM "+prefix+"kv"); err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	for _, stmt := range []string{
		"INSERT INTO " + prefix + "kv (v) VALUES ('before')",
		"SAVEPOINT sp1",
		"INSERT INTO " + prefix + "kv (v) VALUES ('undone')",
		"ROLLBACK TO SAVEPOINT sp1",
		"INSERT INTO " + prefix + "kv (v) VALUES ('after')",
		"RELEASE SAVEPOINT sp1",
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return kvValues(db)
}

func preparedReuse(db *sql.DB) (any, error) {
	conn, err := db.Conn(ctx) // one connection: the statement is prepared once, executed 500 times
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stmt, err := conn.PrepareContext(ctx, "SELECT ? * 2, CONCAT('n', ?)")
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	total := 0
	last := ""
	for i := 0; i < 500; i++ {
		var doubled int
		if err := stmt.QueryRowContext(ctx, i, i).Scan(&doubled, &last); err != nil {
			return nil, err
		}
		total += doubled
	}
	return map[string]any{"sum": total, "last": last}, nil
}

func poolConcurrency(t target) (any, error) {
	db, err := sql.Open("mysql", t.dsn())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	const workers, rounds = 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	sums := make([]int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					errs <- err
					return
				}
				var v int
				if err := tx.QueryRowContext(ctx, "SELECT ? + SLEEP(0.005)", w*rounds+r).Scan(&v); err != nil {
					tx.Rollback()
					errs <- err
					return
				}
				if err := tx.Commit(); err != nil {
					errs <- err
					return
				}
				sums[w] += v
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	total := 0
	for _, s := range sums {
		total += s
	}
	return map[string]any{"workers": workers, "rounds": rounds, "sum": total}, nil
}

func duplicateKey(db *sql.DB) (any, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "DELETE FROM "+prefix+"kv"); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO "+prefix+"kv (id, v) VALUES (1, 'first')"); err != nil {
		return nil, err
	}
	_, dup := conn.ExecContext(ctx, "INSERT INTO "+prefix+"kv (id, v) VALUES (1, 'again')")
	if dup == nil {
		return nil, errors.New("the duplicate insert succeeded")
	}
	after, err := one(conn, "SELECT v FROM "+prefix+"kv WHERE id = 1")
	return map[string]any{"errno": errno(dup), "after": after}, err
}

func queryTimeout(db *sql.DB) (any, error) {
	timeout, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var v int
	err := db.QueryRowContext(timeout, "SELECT SLEEP(3)").Scan(&v)
	if !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("expected a deadline error, got %v (value %d)", err, v)
	}
	after, err := one(db, "SELECT 'usable'")
	return map[string]any{"error": "deadline exceeded", "after": after}, err
}

const killMarker = "SELECT SLEEP(5) AS kill_me_go"

func killQuery(db *sql.DB) (any, error) {
	victim, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer victim.Close()
	id, err := one(victim, "SELECT CONNECTION_ID()")
	if err != nil {
		return nil, err
	}
	type outcome struct {
		value string
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		v, err := one(victim, killMarker)
		done <- outcome{v, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := one(db, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = ?", killMarker)
		if err != nil {
			return nil, err
		}
		if n != "0" {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the query to kill never showed in the process list")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := db.ExecContext(ctx, "KILL QUERY "+id); err != nil {
		return nil, err
	}
	got := <-done
	after, err := one(victim, "SELECT 'usable'")
	return map[string]any{"value": got.value, "errno": errno(got.err), "after": after}, err
}

func largeResult(db *sql.DB) (any, error) {
	rows, err := db.QueryContext(ctx, "SELECT seq, REPEAT('x', seq % 100) FROM seq_1_to_10000")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	count, sum, chars := 0, 0, 0
	for rows.Next() {
		var n int
		var s string
		if err := rows.Scan(&n, &s); err != nil {
			return nil, err
		}
		count++
		sum += n
		chars += len(s)
	}
	return map[string]any{"rows": count, "sum": sum, "chars": chars}, rows.Err()
}

func largePacket(db *sql.DB) (any, error) {
	blob := make([]byte, 4<<20)
	for i := range blob {
		blob[i] = byte(i * 7 % 251)
	}
	if _, err := db.ExecContext(ctx, "REPLACE INTO "+prefix+"blobs (id, b) VALUES (?, ?)", 1, blob); err != nil {
		return nil, err
	}
	var back []byte
	if err := db.QueryRowContext(ctx, "SELECT b FROM "+prefix+"blobs WHERE id = ?", 1).Scan(&back); err != nil {
		return nil, err
	}
	sent, got := sha256.Sum256(blob), sha256.Sum256(back)
	return map[string]any{"bytes": len(back), "same": sent == got, "sha256": hex.EncodeToString(got[:])}, nil
}

func sessionVariable(db *sql.DB) (any, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for _, stmt := range []string{"SET time_zone = '+05:30'", "SET SESSION sql_mode = 'ANSI_QUOTES'", "SET @greeting = 'hi 🐬'"} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return nil, err
		}
	}
	rows, err := conn.QueryContext(ctx, "SELECT @@time_zone, @@sql_mode, @greeting")
	if err != nil {
		return nil, err
	}
	return rowsAsStrings(rows)
}

func lastInsertID(db *sql.DB) (any, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "TRUNCATE TABLE "+prefix+"kv"); err != nil {
		return nil, err
	}
	res, err := conn.ExecContext(ctx, "INSERT INTO "+prefix+"kv (v) VALUES (?), (?)", "a", "b")
	if err != nil {
		return nil, err
	}
	driverID, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	sqlID, err := one(conn, "SELECT LAST_INSERT_ID()")
	return map[string]any{"driver": driverID, "sql": sqlID}, err
}

func multiStatements(t target) (any, error) {
	db, err := sql.Open("mysql", t.dsn("multiStatements=true"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; SELECT 3")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var sets [][][]any
	for {
		var set [][]any
		for rows.Next() {
			var vals []any
			cols, _ := rows.Columns()
			raw := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range raw {
				ptrs[i] = &raw[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return nil, err
			}
			for _, b := range raw {
				vals = append(vals, string(b))
			}
			set = append(set, vals)
		}
		sets = append(sets, set)
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	after, err := one(db, "SELECT 'in sync'")
	return map[string]any{"sets": sets, "after": after}, err
}

// interpolateParams: the driver escapes the arguments into the SQL itself and
// sends COM_QUERY, the setting many Go applications use to save round trips.
func interpolatedParams(t target) (any, error) {
	db, err := sql.Open("mysql", t.dsn("interpolateParams=true"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	when := time.Date(2024, 2, 29, 13, 45, 6, 123456000, time.UTC)
	rows, err := db.QueryContext(ctx, "SELECT ?, ?, ?, ?, ?, HEX(?)",
		42, "12345678.9012", "it's 🐬 \\ \"quoted\"", nil, when, []byte{0, '\'', 0xff})
	if err != nil {
		return nil, err
	}
	return rowsAsStrings(rows)
}

// Closing a result after a few of its 100,000 rows: the driver reads the rest
// off the wire, and the connection goes on.
func earlyClose(db *sql.DB) (any, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, "SELECT seq, REPEAT('y', 50) FROM seq_1_to_100000")
	if err != nil {
		return nil, err
	}
	read := 0
	for read < 10 && rows.Next() {
		read++
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	after, err := one(conn, "SELECT 'usable'")
	return map[string]any{"read": read, "after": after}, err
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: drivers-go mysql://user:password@host:port/database")
		os.Exit(2)
	}
	t := parseTarget(os.Args[1])
	db, err := sql.Open("mysql", t.dsn())
	if err == nil {
		err = setup(db)
	}
	if err != nil {
		emit("setup", nil, err)
		os.Exit(1)
	}
	defer db.Close()
	cases := []struct {
		name string
		run  func() (any, error)
	}{
		{"connect_tls_preferred", func() (any, error) { return connectCase(t, "preferred") }},
		{"connect_plain", func() (any, error) { return connectCase(t, "false") }},
		{"connect_tls_config", func() (any, error) { return tlsConfigCase(t) }},
		{"simple_query", func() (any, error) { return simpleQuery(db) }},
		{"prepared_types", func() (any, error) { return preparedTypes(db) }},
		{"multi_row", func() (any, error) { return multiRow(db) }},
		{"transaction", func() (any, error) { return transaction(db) }},
		{"savepoint", func() (any, error) { return savepoint(db) }},
		{"prepared_reuse", func() (any, error) { return preparedReuse(db) }},
		{"pool_concurrency", func() (any, error) { return poolConcurrency(t) }},
		{"duplicate_key", func() (any, error) { return duplicateKey(db) }},
		{"query_timeout", func() (any, error) { return queryTimeout(db) }},
		{"kill_query", func() (any, error) { return killQuery(db) }},
		{"large_result", func() (any, error) { return largeResult(db) }},
		{"large_packet", func() (any, error) { return largePacket(db) }},
		{"session_variable", func() (any, error) { return sessionVariable(db) }},
		{"last_insert_id", func() (any, error) { return lastInsertID(db) }},
		{"multi_statements", func() (any, error) { return multiStatements(t) }},
		{"interpolated_params", func() (any, error) { return interpolatedParams(t) }},
		{"early_close", func() (any, error) { return earlyClose(db) }},
	}
	for _, c := range cases {
		result, err := c.run()
		emit(c.name, result, err)
	}
}
