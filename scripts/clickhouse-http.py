#!/usr/bin/env python3
"""Serves the ClickHouse engine (chDB, ClickHouse 26.x in-process) over the ClickHouse HTTP
interface on loopback, for development and tests where no ClickHouse server package exists.

Speaks the part of the protocol the `clickhouse` Rust crate and curl use: the query from the
`query` parameter and/or the body, `database`, `default_format`, INSERT data in the body (plain or
chunked), `GET /ping`, and errors as HTTP 500 with `X-ClickHouse-Exception-Code`. MergeTree tables
persist in the data folder. Production points Sightline at a real ClickHouse server instead.

Like a server, and enforced by the engine rather than by reading the SQL:
- users with passwords (`X-ClickHouse-User`/`X-ClickHouse-Key`, HTTP Basic, or `user`/`password`):
  the writer (`--writer NAME:PASSWORD`, for migrations and the sinks) and a reader
  (`--reader NAME:PASSWORD`, for the gateway's `/v1/sql`);
- the reader's queries, and every GET, run on sessions locked with `SET readonly = 1` after their
  limits were set (`--max-execution-time`, `--max-result-rows`, `--max-result-bytes`,
  `--max-memory-usage`, `--max-bytes-to-read`): no write, DDL, `SET`, `SETTINGS` change or
  file/url/remote table function can run there, whatever the SQL says;
- one statement per request (ClickHouse's own parser decides);
- at most `--max-concurrent` requests at once; a slow reader query never holds up the writer.
"""
import argparse
import base64
import hmac
import os
import queue
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

LOCK = threading.Lock()
SESSION = None  # the writer's session
READERS = queue.Queue()  # read-only sessions, one per query at a time
USERS = {}  # name -> (password, readonly)
SLOTS = None  # bounds the requests served at once
TMP = None
MAX_BODY = 512 * 1024 * 1024
# Parameters that are protocol, not settings.
RESERVED = {"query", "database", "default_format", "user", "password", "query_id", "session_id",
            "decompress", "compress", "wait_end_of_query"}
INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\s", re.I)
FORMAT_RE = re.compile(r"\sFORMAT\s+(\w+)\s*;?\s*$", re.I)
CODE_RE = re.compile(r"Code:\s*(\d+)")
SETTING_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

class Refused(Exception):
    """An error with ClickHouse's code, answered as the server would."""

    def __init__(self, code, message, status=500):
        super().__init__(f"Code: {code}. DB::Exception: {message}")
        self.code, self.status = str(code), status


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
        try:
            readonly = self.authenticate(params) or self.command == "GET"
        except Refused as e:
            return self.reply(e.status, (str(e) + "\n").encode(), code=e.code)
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
        if not SLOTS.acquire(timeout=30):
            return self.reply(503, b"Code: 202. DB::Exception: Too many simultaneous queries.\n", code="202")
        try:
            out = run(query, data, params.get("database"), fmt, settings, readonly)
        except Exception as e:  # chDB raises with ClickHouse's own message and code
            msg = str(e)
            m = CODE_RE.search(msg)
            return self.reply(500, (msg.strip() + "\n").encode(), code=m.group(1) if m else "1000")
        finally:
            SLOTS.release()
        return self.reply(200, out)

    def authenticate(self, params):
        """The request's user, checked against its password; returns whether it is read-only."""
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        key = self.headers.get("X-ClickHouse-Key") or params.get("password")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                raise Refused(516, "Authentication failed: malformed Basic credentials", 401)
        user = user or "default"
        known = USERS.get(user)
        if known is None or not hmac.compare_digest(known[0].encode(), (key or "").encode()):
            raise Refused(516, f"{user}: Authentication failed: password is incorrect, or there is no user with such name.", 401)
        return known[1]

    def reply(self, status, body, code=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", code)
        self.end_headers()
        self.wfile.write(body)


def run(query, data, database, fmt, settings, readonly):
    single_statement(query)
    if readonly:
        if data:
            raise Refused(164, "Cannot execute query in readonly mode. (READONLY)")
        no_outfile(query)
        return run_read(query, database, fmt)
    return run_write(query, data, database, fmt, settings)


def single_statement(query):
    """ClickHouse's own parser decides: a second statement is a syntax error, as on a server."""
    session = READERS.get()
    try:
        escaped = query.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        session.query("SELECT formatQuerySingleLine({q:String})", "TabSeparatedRaw", params={"q": escaped})
    finally:
        READERS.put(session)


def no_outfile(query):
    """`INTO OUTFILE` writes a file on this host in chDB (a server leaves it to the client), and
    `readonly` does not stop it: refused for readers. In ClickHouse's parse the out file is a
    literal right under the statement."""
    session = READERS.get()
    try:
        ast = session.query("EXPLAIN AST " + query, "TSVRaw").bytes().decode("utf-8", "replace")
    finally:
        READERS.put(session)
    if any(line.startswith(" Literal ") for line in ast.splitlines()):
        raise Refused(164, "INTO OUTFILE is not allowed in readonly mode. (READONLY)")


def run_read(query, database, fmt):
    """On a read-only session: its limits were set before `readonly = 1` locked them, so the
    request's settings are not applied (a real server would refuse them too)."""
    session = READERS.get()
    try:
        session.query(f"USE `{database or 'default'}`")
        result = session.query(query, fmt) if not FORMAT_RE.search(query) else session.query(query)
        return result.bytes() if result is not None else b""
    finally:
        READERS.put(session)


def run_write(query, data, database, fmt, settings):
    with LOCK:
        # The one write session keeps its current database between requests: each request sets
        # its own, or `default`. A database that does not exist (not created yet, or dropped
        # while a writer still had a batch in flight) leaves the session on `default`, never on
        # the previous request's database, where unqualified names would land in someone
        # else's tables (seen: a test's rows inserted into another test's database).
        try:
            SESSION.query(f"USE `{database or 'default'}`")
        except Exception:
            SESSION.query("USE default")
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


def credentials(spec):
    name, _, password = spec.partition(":")
    if not name:
        raise SystemExit(f"clickhouse-http: user `{spec}` needs a name (NAME:PASSWORD)")
    return name, password


def reader_session(path, a):
    """A session whose limits are set, then locked with readonly = 1."""
    session = chdb_session.Session(path)
    for k, v in [("max_execution_time", a.max_execution_time), ("max_result_rows", a.max_result_rows),
                 ("result_overflow_mode", "'break'"), ("max_result_bytes", a.max_result_bytes),
                 ("max_memory_usage", a.max_memory_usage), ("max_bytes_to_read", a.max_bytes_to_read),
                 ("output_format_json_quote_64bit_integers", 0), ("readonly", 1)]:
        session.query(f"SET {k} = {v}")
    return session


def main():
    global SESSION, TMP, SLOTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder for the engine's data")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--writer", default="default:", help="NAME:PASSWORD of the user that may write")
    ap.add_argument("--reader", default="sightline_reader:sightline-reader-dev",
                    help="NAME:PASSWORD of the read-only user")
    ap.add_argument("--readers", type=int, default=4, help="read-only sessions (queries at once)")
    ap.add_argument("--max-concurrent", type=int, default=32, help="requests served at once")
    ap.add_argument("--max-execution-time", type=int, default=10)
    ap.add_argument("--max-result-rows", type=int, default=10000)
    ap.add_argument("--max-result-bytes", type=int, default=64 << 20)
    ap.add_argument("--max-memory-usage", type=int, default=1 << 30)
    ap.add_argument("--max-bytes-to-read", type=int, default=10 << 30)
    a = ap.parse_args()
    os.makedirs(a.data, exist_ok=True)
    TMP = os.path.join(a.data, "tmp-inserts")
    os.makedirs(TMP, exist_ok=True)
    writer, reader = credentials(a.writer), credentials(a.reader)
    USERS[writer[0]] = (writer[1], False)
    USERS[reader[0]] = (reader[1], True)
    path = os.path.join(a.data, "chdb")
    SESSION = chdb_session.Session(path)
    for _ in range(max(1, a.readers)):
        READERS.put(reader_session(path, a))
    SLOTS = threading.BoundedSemaphore(max(1, a.max_concurrent))
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
