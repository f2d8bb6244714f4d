-- Connect-per-request (the PHP/CGI pattern) for sysbench 1.0:
-- every event opens a connection, runs one point select, and disconnects.
--   sysbench bench/connect_per_request.lua --mysql-...= --table-size=N --threads=8 --time=10 run
-- The table is the one `oltp_point_select prepare` creates (sbtest1).

sysbench.cmdline.options = {
   table_size = {"Number of rows in sbtest1", 100000},
   tables = {"Number of tables (only sbtest1 is read)", 1},
}

function prepare()
   error("run `sysbench oltp_point_select prepare` to create sbtest1")
end

function thread_init()
   drv = sysbench.sql.driver()
end

function event()
   local con = drv:connect()
   local id = sysbench.rand.uniform(1, sysbench.opt.table_size)
   local rs = con:query("SELECT c FROM sbtest1 WHERE id=" .. id)
   if rs ~= nil and rs.free ~= nil then
      rs:free()
   end
   con:disconnect()
end

function thread_done()
end
