#!/usr/bin/env python3
"""Serves the ClickHouse engine (chDB, ClickHouse 26.x in-process) over the ClickHouse HTTP
interface on loopback, for development and tests where no ClickHouse server package exists.

Speaks the part of the protocol the `clickhouse` Rust crate and curl use: the query from the
`query` parameter and/or the body, `database`, `default_format`, INSERT data in the body (plain or
chunked), `GET /ping`, and errors as HTTP 500 with `X-ClickHouse-Exception-Code`. Queries run one at
a time in one persistent session, so MergeTree tables survive restarts. Production points Sightline
at a real ClickHouse server instead.
"""
import argparse
import os
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

LOCK = threading.Lock()
SESSION = None
TMP = None
MAX_BODY = 512 * 1024 * 1024
# Parameters that are protocol, not settings.
RESERVED = {"query", "database", "default_format", "user", "password", "query_id", "session_id",
            "decompress", "compress", "wait_end_of_query"}
INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\s", re.I)
FORMAT_RE = re.compile(r"\sFORMAT\s+(\w+)\s*;?\s*$", re.I)
CODE_RE = re.compile(r"Code:\s*(\d+)")
SETTING_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `readonly` cannot be SET in the one shared session (it would lock every later query), so the
# adapter enforces it itself: with readonly=1 only these statements run, as on a real server.
READ_RE = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.I | re.S)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; errors are reported in responses
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path in ("/ping", "/"):
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            if "query" not in params:
                return self.reply(200, b"Ok.\n")
        return self.handle_query(b"")

    def do_POST(self):
        try:
            body = self.read_body()
        except ValueError as e:
            return self.reply(413, str(e).encode(), code="307")
        return self.handle_query(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(n) if n else b""

    def handle_query(self, body):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if params.get("decompress") == "1" or self.headers.get("Content-Encoding"):
            return self.reply(400, b"compressed requests are not supported by this adapter", code="1")
        query = params.get("query", "")
        data = b""
        if query and INSERT_RE.match(query) and body:
            data = body
        else:
            query = (query + " " + body.decode("utf-8", "replace")).strip() if body else query
        if not query:
            return self.reply(400, b"Empty query", code="62")
        settings = [(k, v) for k, v in params.items() if k not in RESERVED and not k.startswith("param_")]
        fmt = params.get("default_format") or "TabSeparated"
        try:
            out = run(query, data, params.get("database"), fmt, settings)
        except Exception as e:  # chDB raises with ClickHouse's own message and code
            msg = str(e)
            m = CODE_RE.search(msg)
            return self.reply(500, (msg.strip() + "\n").encode(), code=m.group(1) if m else "1000")
        return self.reply(200, out)

    def reply(self, status, body, code=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", code)
        self.end_headers()
        self.wfile.write(body)


def run(query, data, database, fmt, settings):
    readonly = dict(settings).get("readonly", "0") not in ("0", "")
    settings = [(k, v) for k, v in settings if k != "readonly"]
    if readonly and (data or not READ_RE.match(query)):
        raise RuntimeError("Code: 164. DB::Exception: Cannot execute query in readonly mode. (READONLY)")
    with LOCK:
        if database:
            try:
                SESSION.query(f"USE `{database}`")
            except Exception:
                pass  # the database may not exist yet (migrations create it)
        for k, v in settings:
            if SETTING_RE.match(k):
                SESSION.query(f"SET {k} = {quote(v)}")
        try:
            if data:
                m = FORMAT_RE.search(query)
                if not m:
                    raise RuntimeError("Code: 62. INSERT with a body needs a FORMAT clause")
                with tempfile.NamedTemporaryFile(dir=TMP, delete=False) as f:
                    f.write(data)
                    path = f.name
                try:
                    sql = query[: m.start()] + f" FROM INFILE '{path}' FORMAT {m.group(1)}"
                    SESSION.query(sql)
                finally:
                    os.unlink(path)
                return b""
            result = SESSION.query(query, fmt) if not FORMAT_RE.search(query) else SESSION.query(query)
            return result.bytes() if result is not None else b""
        finally:
            for k, _ in settings:
                if SETTING_RE.match(k):
                    try:
                        SESSION.query(f"SET {k} = DEFAULT")
                    except Exception:
                        pass


def quote(v):
    if re.fullmatch(r"-?\d+(\.\d+)?", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def main():
    global SESSION, TMP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder for the engine's data")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    a = ap.parse_args()
    os.makedirs(a.data, exist_ok=True)
    TMP = os.path.join(a.data, "tmp-inserts")
    os.makedirs(TMP, exist_ok=True)
    SESSION = chdb_session.Session(os.path.join(a.data, "chdb"))
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True
    print(f"clickhouse-http: serving chDB on http://{a.host}:{a.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        SESSION.close()


if __name__ == "__main__":
    sys.exit(main())
