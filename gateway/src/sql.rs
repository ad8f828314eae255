//! `POST /v1/sql`: read-only SQL over the event store, and `GET /v1/dlq`: dead letters.
//!
//! What keeps a query read-only is the database: it runs as the read-only user, whose profile has
//! `readonly = 1` and the limits, and which may only read Sightline's database. Before that, two
//! checks give clear refusals: a quick look at the text (one statement, a read keyword, no
//! `SETTINGS` or `INTO OUTFILE`), then ClickHouse's own parse (`EXPLAIN AST`): no table function at
//! all, and no table outside Sightline's database.

use crate::error::ApiError;
use crate::routes::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sightline_store::{SqlFormat, StoreError};

const READ_KEYWORDS: [&str; 7] = ["SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"];

/// Table functions that read files or reach other systems.
const FORBIDDEN_FUNCTIONS: [&str; 24] = [
    "file",
    "url",
    "urlcluster",
    "s3",
    "s3cluster",
    "gcs",
    "azureblobstorage",
    "hdfs",
    "hdfscluster",
    "remote",
    "remotesecure",
    "cluster",
    "clusterallreplicas",
    "mysql",
    "postgresql",
    "jdbc",
    "odbc",
    "executable",
    "input",
    "mongodb",
    "redis",
    "sqlite",
    "iceberg",
    "deltalake",
];

/// The query with string literals, quoted identifiers and comments blanked out, so keywords can
/// be looked for without being fooled by text inside them.
fn code_only(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && chars.get(i + 1) == Some(&'-') || c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.push(' ');
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if c == '\'' || c == '"' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str(if c == '\'' { "''" } else { "x" });
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Why a query is refused before it reaches ClickHouse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<&str> for Refusal {
    fn from(why: &str) -> Self {
        Self(why.to_string())
    }
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Self(why)
    }
}

/// Why a query is refused, or `Ok` for a single read statement.
pub fn check_read_only(sql: &str) -> Result<(), Refusal> {
    let code = code_only(sql);
    let statements: Vec<&str> = code.split(';').filter(|s| !s.trim().is_empty()).collect();
    match statements.len() {
        0 => return Err("the query is empty".into()),
        1 => {}
        n => return Err(Refusal(format!("one statement per request, found {n}"))),
    }
    let first = statements[0].split(|c: char| !c.is_ascii_alphanumeric() && c != '_').find(|w| !w.is_empty());
    let first = first.unwrap_or("").to_ascii_uppercase();
    if !READ_KEYWORDS.contains(&first.as_str()) {
        return Err(Refusal(format!(
            "only read queries are allowed ({}); `{first}` changes data or settings",
            READ_KEYWORDS.join(", ")
        )));
    }
    let words: Vec<String> = code
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '(')
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let lower = code.to_ascii_lowercase();
    for f in FORBIDDEN_FUNCTIONS {
        let mut rest = lower.as_str();
        while let Some(pos) = rest.find(f) {
            let before_ok = pos == 0
                || !rest.as_bytes()[pos - 1].is_ascii_alphanumeric() && rest.as_bytes()[pos - 1] != b'_';
            let after = rest[pos + f.len()..].trim_start();
            if before_ok && after.starts_with('(') {
                return Err(Refusal(format!("the table function `{f}` is not allowed")));
            }
            rest = &rest[pos + f.len()..];
        }
    }
    if words.iter().any(|w| w == "settings") {
        return Err("query-level SETTINGS are not allowed".into());
    }
    if words.iter().any(|w| w == "outfile") {
        return Err("INTO OUTFILE is not allowed".into());
    }
    Ok(())
}

/// Why ClickHouse's parse of a query (`EXPLAIN AST` text, one node a line, indented by depth) is
/// refused: a table function anywhere (a `Function` directly under a `TableExpression`), or a
/// table of another database than `database`.
pub fn check_ast(ast: &str, database: &str) -> Result<(), Refusal> {
    // The node names on the path from the root to the current line.
    let mut path: Vec<String> = Vec::new();
    // Lines may come quoted (a FORMAT clause in the query can change how the engine writes the
    // EXPLAIN answer); anything that does not read as an AST is refused, never passed.
    let lines: Vec<&str> =
        ast.lines().map(|l| l.strip_prefix('"').and_then(|l| l.strip_suffix('"')).unwrap_or(l)).collect();
    let root = lines.first().map(|l| l.trim()).unwrap_or("");
    // The root is a statement node: `SelectWithUnionQuery`, `ShowTables`, `DescribeQuery`, ….
    let readable = root.split_whitespace().next().is_some_and(|n| {
        n.len() > 3
            && n.starts_with(|c: char| c.is_ascii_uppercase())
            && n.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !readable {
        return Err(Refusal(
            "the query could not be checked (ClickHouse's parse of it was not readable)".into(),
        ));
    }
    for line in lines {
        let depth = line.len() - line.trim_start().len();
        let node = line.trim();
        path.truncate(depth);
        let parent = path.last().map(String::as_str).unwrap_or("");
        let mut words = node.split_whitespace();
        // A literal right under the statement is an `INTO OUTFILE` target.
        if depth == 1 && node.starts_with("Literal ") {
            return Err("INTO OUTFILE is not allowed".into());
        }
        // An identifier there is a `FORMAT` clause, which would override the answer's format.
        if depth == 1 && node.starts_with("Identifier ") {
            return Err(
                "a FORMAT clause is not allowed; ask for `\"format\": \"csv\"` or \"json\" in the request"
                    .into(),
            );
        }
        if depth == 1 && node == "Set" {
            return Err("a SETTINGS clause is not allowed; the server's limits apply".into());
        }
        match (words.next(), words.next()) {
            (Some("Function"), Some(name)) if parent.starts_with("TableExpression") => {
                return Err(Refusal(format!(
                    "table functions are not allowed (`{name}`); query Sightline's tables"
                )));
            }
            (Some("TableIdentifier"), Some(table)) => {
                if let Some((db, _)) = table.split_once('.')
                    && db.trim_matches('`') != database
                {
                    return Err(Refusal(format!(
                        "only the tables of the `{database}` database can be read, not `{table}`"
                    )));
                }
            }
            _ => {}
        }
        path.push(node.to_string());
    }
    Ok(())
}

/// A read-only query.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT / WITH / SHOW / DESCRIBE / EXPLAIN / EXISTS statement.
    sql: String,
    /// "json" (default) or "csv".
    #[serde(default)]
    format: Option<String>,
}

#[utoipa::path(post, path = "/v1/sql", tag = "sql", request_body = SqlRequest,
    responses((status = 200, description = "ClickHouse JSON (meta, data, rows) or CSV with names", body = Object),
        (status = 400, description = "not read-only, or rejected by ClickHouse", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, description = "not sent as application/json", body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn sql(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<axum::Extension<crate::feed_guard::Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    crate::streams::require_json(&headers)?;
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    let g = &st.cfg.gateway;
    let _slot = st.queries.take(&who, g.sql_max_concurrent, g.sql_max_concurrent_per_key)?;
    let body = body.map_err(|e| crate::streams::body_error(e, st.cfg.gateway.max_body_bytes))?;
    let req: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("request body: {e}; expected {{\"sql\": \"SELECT …\", \"format\": \"json\"|\"csv\"}}"),
        )
    })?;
    let format = match req.format.as_deref().unwrap_or("json") {
        "json" => SqlFormat::Json,
        "csv" => SqlFormat::Csv,
        other => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("format `{other}` is not supported; use json or csv"),
            ));
        }
    };
    check_read_only(&req.sql).map_err(|why| ApiError::bad_request("read_only", why.0))?;
    let sql = req.sql.trim().trim_end_matches(';');
    match st.store.explain_ast(sql).await {
        Ok(ast) => check_ast(&ast, &st.cfg.clickhouse.database)
            .map_err(|why| ApiError::bad_request("read_only", why.0))?,
        Err(StoreError::ClickHouse { source: clickhouse::error::Error::BadResponse(msg), .. }) => {
            let msg: String = msg.lines().next().unwrap_or("").chars().take(2000).collect();
            return Err(ApiError::bad_request("sql_error", msg));
        }
        Err(e) => return Err(e.into()),
    }
    let out = st.store.query_readonly(sql, format, g.sql_max_bytes).await;
    match out {
        Ok(bytes) => {
            let ctype = match format {
                SqlFormat::Json => "application/json",
                SqlFormat::Csv => "text/csv; charset=utf-8",
            };
            Ok(([(header::CONTENT_TYPE, ctype)], bytes).into_response())
        }
        // The server answered with an error: the query is at fault, say what ClickHouse said.
        Err(StoreError::ClickHouse { source: clickhouse::error::Error::BadResponse(msg), .. }) => {
            let msg: String = msg.lines().next().unwrap_or("").chars().take(2000).collect();
            Err(ApiError::bad_request("sql_error", msg))
        }
        Err(StoreError::TooLarge { max_bytes }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "result_too_large",
            format!(
                "the answer is larger than {max_bytes} bytes (gateway.sql_max_bytes); narrow the query or add a LIMIT"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DlqQuery {
    /// Only this work kind (scenes, speech).
    kind: Option<String>,
    /// At most this many, newest first (1..=1000, default 100).
    limit: Option<usize>,
}

/// `GET /v1/dlq`: the newest dead letters, read from the JetStream DLQ stream itself.
#[utoipa::path(get, path = "/v1/dlq", tag = "operations", params(DlqQuery),
    responses((status = 200, description = "`total` and the newest `dead_letters`", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn dlq(
    State(st): State<AppState>,
    q: Result<Query<DlqQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("invalid_limit", "limit must be 1..=1000"));
    }
    let name = st.bus.names.dlq_stream();
    let mut stream = st
        .bus
        .js
        .get_stream(&name)
        .await
        .map_err(|e| ApiError::unavailable(format!("the event bus is not reachable: {e}")))?;
    let info = stream
        .info()
        .await
        .map_err(|e| ApiError::unavailable(format!("the event bus is not reachable: {e}")))?;
    let (first, last, total) = (info.state.first_sequence, info.state.last_sequence, info.state.messages);
    let mut items = Vec::new();
    let mut seq = last;
    // Bounded walk back from the newest message (at most 4x the limit, for kind filtering).
    let mut budget = limit * 4;
    while seq >= first.max(1) && items.len() < limit && budget > 0 && total > 0 {
        budget -= 1;
        if let Ok(m) = stream.get_raw_message(seq).await {
            let kind = m.subject.rsplit('.').next().unwrap_or("").to_string();
            if q.kind.as_deref().is_none_or(|k| k == kind) {
                let h = |k: &str| m.headers.get(k).map(|v| v.as_str().to_string());
                items.push(serde_json::json!({
                    "seq": m.sequence,
                    "kind": kind,
                    "original_subject": h("Sl-Original-Subject"),
                    "error": h("Sl-Error"),
                    "delivered": h("Sl-Delivered").and_then(|d| d.parse::<u64>().ok()),
                    "msg_id": h("Nats-Msg-Id"),
                    "payload_bytes": m.payload.len(),
                    "time": m.time.to_string(),
                }));
            }
        }
        seq -= 1;
    }
    Ok((StatusCode::OK, axum::Json(serde_json::json!({ "total": total, "dead_letters": items })))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBQUERY: &str = "SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 3)
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier events
   Function in (children 1)
    ExpressionList (children 2)
     Identifier kind
     Subquery (children 1)
      SelectWithUnionQuery (children 1)
       ExpressionList (children 1)
        SelectQuery (children 2)
         TablesInSelectQuery (children 1)
          TablesInSelectQueryElement (children 1)
           TableExpression (children 1)
            TableIdentifier DB.scenes";

    #[test]
    fn the_parse_refuses_table_functions_and_other_databases() {
        assert_eq!(check_ast(&SUBQUERY.replace("DB", "sightline"), "sightline"), Ok(()));
        let other = check_ast(&SUBQUERY.replace("DB", "system"), "sightline").unwrap_err();
        assert!(other.0.contains("`system.scenes`"), "{other}");
        let file = "SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function count (children 1)
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function file (children 1)
       ExpressionList (children 1)
        Literal '/etc/passwd'";
        let err = check_ast(file, "sightline").unwrap_err();
        assert!(err.0.contains("`file`"), "{err}");
        let outfile = "SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n Literal '/tmp/x'";
        assert_eq!(check_ast(outfile, "sightline"), Err(Refusal::from("INTO OUTFILE is not allowed")));
        // An ordinary function (count) is not a table function.
        assert_eq!(check_ast(&file.replace("Function file", "TableIdentifier events"), "sightline"), Ok(()));
        // FORMAT and SETTINGS clauses hang off the statement.
        let format = "SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n  SelectQuery\n Identifier Native";
        assert!(check_ast(format, "sightline").unwrap_err().0.contains("FORMAT"));
        let settings = "SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n  SelectQuery\n Set";
        assert!(check_ast(settings, "sightline").unwrap_err().0.contains("SETTINGS"));
        // Quoted lines read the same; an answer that is not an AST is refused.
        let quoted = format.lines().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join("\n");
        assert!(check_ast(&quoted, "sightline").unwrap_err().0.contains("FORMAT"));
        assert!(check_ast("\u{1}\u{0}binary", "sightline").unwrap_err().0.contains("could not be checked"));
        assert!(check_ast("", "sightline").is_err());
        // An identifier deeper down is a column.
        let column = "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery\n   Identifier kind";
        assert_eq!(check_ast(column, "sightline"), Ok(()));
    }

    #[test]
    fn reads_pass_and_writes_do_not() {
        for ok in [
            "SELECT count() FROM events",
            "  with x AS (SELECT 1) SELECT * FROM x;",
            "-- note\nSELECT 'DROP TABLE x; INSERT' AS s",
            "SHOW TABLES",
            "DESCRIBE TABLE events",
            "EXPLAIN SELECT 1",
            "SELECT fileSize FROM t",
        ] {
            assert_eq!(check_read_only(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("INSERT INTO events VALUES (1)", "INSERT"),
            ("DROP TABLE events", "DROP"),
            ("ALTER TABLE events DELETE WHERE 1", "ALTER"),
            ("SET readonly = 0", "SET"),
            ("TRUNCATE TABLE events", "TRUNCATE"),
            ("CREATE TABLE x (a UInt8) ENGINE = Memory", "CREATE"),
            ("/* hi */ OPTIMIZE TABLE events", "OPTIMIZE"),
            ("SELECT 1; DROP TABLE events", "one statement"),
            ("SELECT * FROM file('/etc/passwd')", "file"),
            ("SELECT * FROM url ('http://x', CSV)", "url"),
            ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
            ("SELECT 1 INTO OUTFILE '/tmp/x'", "OUTFILE"),
            ("", "empty"),
        ] {
            let err = check_read_only(bad).unwrap_err();
            assert!(err.0.contains(why), "{bad}: {err}");
        }
    }
}
