# The status page on the metrics port: GET /status (and /) as HTML, /status.json as JSON.
#
# What this module owns: what the page shows and how it looks. The data is
# status_data(): the proxy's state and readiness, the rows of SHOW POOLS,
# SHOW CLIENTS and SHOW SERVERS (from snapshots.py, the functions the admin
# console uses, so the two never disagree) and the recent events
# (events.py), newest first. status_json() is that as JSON; status_html()
# renders it as one self-contained page (inline CSS and a few lines of inline
# JS, no other request but its own refresh).
#
# How it works: every value put into the HTML goes through html.escape. The
# page refreshes itself: its script fetches the page again every
# REFRESH_SECONDS and swaps in the new <main> (rendered, and escaped, here),
# so there is one renderer; without JS a <noscript> meta refresh does it.
# The response is bounded: at most MAX_ROWS rows per table (the lowest ids;
# "omitted" says how many more there are), text values cut to MAX_TEXT
# characters, at most MAX_EVENTS events. The Content-Security-Policy lets
# the page run only its own script and style (by hash) and fetch only itself.
"""The status page: pools, clients, servers and recent events, as HTML and JSON."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..events import EVENTS, Event
from .snapshots import CLIENTS, POOLS, SERVERS, Table

if TYPE_CHECKING:
    from ..proxy.proxy import Proxy

__all__ = ["status_data", "status_json", "status_html", "HTML_HEADERS", "MAX_ROWS", "MAX_TEXT", "MAX_EVENTS"]

MAX_ROWS = 100  # rows per table
MAX_TEXT = 120  # characters of a text value
MAX_EVENTS = 50  # most recent events shown
REFRESH_SECONDS = 2
TABLES = (POOLS, CLIENTS, SERVERS)


# -- data -------------------------------------------------------------------------------------


def status_data(proxy: Proxy) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able values."""
    readiness = proxy.readiness()
    data: dict[str, Any] = {
        "version": __version__,
        "time": _iso(time.time()),
        "worker": proxy.worker.index if proxy.worker else None,
        "state": proxy.state.value,
        "ready": readiness.ready,
        "readiness": readiness.reason,
    }
    omitted = {}
    for table in TABLES:
        rows = table.rows(proxy, MAX_ROWS)
        data[table.name] = table.as_dicts(tuple(_cut(v) for v in row) for row in rows)
        omitted[table.name] = max(0, table.count(proxy) - len(rows))
    data["events"] = [_event(e) for e in EVENTS.recent(MAX_EVENTS)]
    data["omitted"] = omitted
    return data


def status_json(proxy: Proxy) -> bytes:
    return json.dumps(status_data(proxy), ensure_ascii=False).encode("utf-8")


def _cut(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT - 1] + "…"
    return value


def _event(event: Event) -> dict[str, Any]:
    return {"time": _iso(event.at), "kind": event.kind.value, "pool": event.pool, "message": _cut(event.message)}


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


# -- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;flex-wrap:wrap;gap:.4em 1.4em;align-items:baseline;padding:.7em 1.2em;background:#1d2330;color:#fff}
header h1{font-size:1.15em;margin:0}
header label{margin-left:auto}
main{padding:.2em 1.2em 1.2em}
h2{font-size:1em;margin:1.2em 0 .4em}
h2 small{font-weight:normal;color:#667}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{padding:.25em .6em;border-bottom:1px solid #e2e5ea;text-align:left;white-space:nowrap}
th{background:#eceef2;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{white-space:normal;max-width:40em}
.badge{padding:.1em .5em;border-radius:.3em;font-weight:600}
.ok{background:#2e8540;color:#fff}.bad{background:#c0392b;color:#fff}
.summary{margin:.9em 0 0}
.empty,.more{color:#667;font-style:italic}
#stale{display:none;color:#ffb3a7}
"""

SCRIPT = """
(function () {
  var stale = document.getElementById("stale"), auto = document.getElementById("auto");
  function refresh() {
    if (!auto.checked) return;
    fetch(location.pathname, {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (text) {
      var page = new DOMParser().parseFromString(text, "text/html");
      document.querySelector("main").replaceWith(page.querySelector("main"));
      stale.style.display = "none";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
    }).catch(function () { stale.style.display = "inline"; });
  }
  setInterval(refresh, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


HTML_HEADERS = {
    "Content-Security-Policy": (f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def status_html(proxy: Proxy) -> bytes:
    data = status_data(proxy)
    ready = data["ready"]
    worker = f" · worker {data['worker']}" if data["worker"] is not None else ""
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        f"<title>mysqlpool-proxy status</title><style>{STYLE}</style>",
        f"<noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS * 5}\"></noscript></head>",
        "<body data-refreshes=\"0\"><header>",
        f"<h1>mysqlpool-proxy {_e(data['version'])}{_e(worker)}</h1>",
        "<span id=\"stale\">no answer from the proxy: showing older data</span>",
        "<label><input type=\"checkbox\" id=\"auto\" checked> refresh every "
        f"{REFRESH_SECONDS}s</label></header><main>",
        f"<p class=\"summary\"><span class=\"badge {'ok' if ready else 'bad'}\">{'ready' if ready else 'not ready'}"
        f"</span> {'' if ready else _e(data['readiness']) + ' · '}state <b>{_e(data['state'])}</b> · "
        f"at <time>{_e(data['time'].replace('T', ' ').rstrip('Z'))} UTC</time></p>",
    ]
    parts.extend(_table(table, data[table.name], data["omitted"][table.name]) for table in TABLES)
    parts.append(_events(data["events"]))
    parts.append(f"</main><script>{SCRIPT}</script></body></html>\n")
    return "".join(parts).encode("utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(table: Table, rows: list[dict[str, Any]], omitted: int) -> str:
    names = table.column_names
    total = len(rows) + omitted
    out = [f"<section id=\"{table.name}\"><h2>{table.name.capitalize()} <small>({total})</small></h2>"]
    if not rows:
        return "".join(out) + f"<p class=\"empty\">no {table.name}</p></section>"
    out.append("<table><thead><tr>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr></thead><tbody>")
    out.extend("<tr>" + "".join(_cell(n, row[n]) for n in names) + "</tr>" for row in rows)
    out.append("</tbody></table>")
    if omitted:
        out.append(f"<p class=\"more\">… and {omitted} more {table.name} not shown "
                   f"(the first {len(rows)} by id are)</p>")
    return "".join(out) + "</section>"


def _cell(name: str, value: object) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float) and name.endswith("_seconds"):
        return f"<td class=\"n\" title=\"{value:.3f}s\">{_e(_duration(value))}</td>"
    if isinstance(value, float):
        return f"<td class=\"n\">{value:.3f}</td>"
    if isinstance(value, int):
        return f"<td class=\"n\">{value}</td>"
    return f"<td class=\"wrap\">{_e(value)}</td>" if name in ("last_error", "program") else f"<td>{_e(value)}</td>"


def _duration(seconds: float) -> str:
    """4ms, 3.2s, 4m05s, 2h07m, 3d04h (negative: -… for an expiry already past)."""
    sign, s = ("-", -seconds) if seconds < 0 else ("", seconds)
    if s < 1 and s != 0:
        return f"{sign}{s * 1000:.0f}ms"
    if s < 60:
        return f"{sign}{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{sign}{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{sign}{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{sign}{d}d{h:02d}h"


def _events(events: list[dict[str, Any]]) -> str:
    out = [f"<section id=\"events\"><h2>Recent events <small>(newest first, up to {MAX_EVENTS})</small></h2>"]
    if not events:
        return "".join(out) + "<p class=\"empty\">none since the start</p></section>"
    out.append("<table><thead><tr><th>time (UTC)</th><th>event</th><th>pool</th><th>message</th></tr></thead><tbody>")
    out.extend(f"<tr><td>{_e(e['time'].replace('T', ' ').rstrip('Z'))}</td><td>{_e(e['kind'])}</td>"
               f"<td>{_e(e['pool'] or '')}</td><td class=\"wrap\">{_e(e['message'])}</td></tr>"
               for e in events)
    return "".join(out) + "</tbody></table></section>"
