//! SQL as an attacker with a read key would write it: table functions by every spelling, a second
//! statement behind every style of comment, writes, DDL, settings, other databases. Through the
//! gateway each is refused with a reason; straight at ClickHouse as the read-only user (no gateway
//! check in the way) the engine itself refuses them; and afterwards the data is still there.

mod common;

use common::{TestSystem, test_config};
use sightline_actors::Roles;

const GATEWAY: Roles = Roles { gateway: true, ingest: false, inference: false, sink: false };

fn attacks(db: &str) -> Vec<String> {
    let drop = format!("DROP DATABASE {db}");
    [
        "SELECT * FROM \"file\"('/etc/passwd', 'LineAsString')".to_string(),
        "SELECT * FROM FILE('/etc/passwd', 'LineAsString')".into(),
        "SELECT * FROM `file`('/etc/passwd', 'LineAsString')".into(),
        "SELECT * FROM file ( '/etc/passwd' , 'LineAsString' )".into(),
        "WITH x AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM x".into(),
        "SELECT * FROM events WHERE id IN (SELECT line FROM file('/etc/passwd', 'LineAsString'))".into(),
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')".into(),
        "SELECT * FROM remote('127.0.0.1:9000', system.one)".into(),
        "SELECT * FROM s3('http://127.0.0.1:9/x', 'CSV')".into(),
        "SELECT * FROM numbers(10000000000)".into(),
        "SELECT * FROM system.tables".into(),
        format!("SELECT 1 // a comment\n; {drop}"),
        format!("SELECT 1 -- a comment\n; {drop}"),
        format!("SELECT 1 /* ; */ ; {drop}"),
        format!("SELECT 1; {drop}"),
        format!("SELECT ';'; {drop}"),
        drop.clone(),
        drop.to_lowercase(),
        format!("/* hidden */ {drop}"),
        "INSERT INTO events (id) VALUES ('forged')".into(),
        "ALTER TABLE events DELETE WHERE 1".into(),
        "SELECT 1 SETTINGS readonly = 0".into(),
        "SELECT 1 settings max_result_rows = 0".into(),
        "SET readonly = 0".into(),
        "SELECT * FROM events INTO OUTFILE '/tmp/sightline-leak'".into(),
        // Casing, quoting and spacing of table functions and statements.
        "sElEcT * fRoM FiLe('/etc/passwd', 'LineAsString')".into(),
        "SELECT * FROM\tfile\n(\n'/etc/passwd', 'LineAsString')".into(),
        "SELECT * FROM (SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString')))".into(),
        "SELECT * FROM events UNION ALL SELECT * FROM file('/etc/passwd', 'LineAsString')".into(),
        "SELECT * FROM events AS e JOIN url('http://127.0.0.1:9/', 'LineAsString') AS u ON 1".into(),
        "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'x String')".into(),
        "SELECT * FROM input('x String')".into(),
        format!("DrOp DaTaBaSe {db}"),
        format!("SELECT 1;{drop}"),
        format!("SELECT 1\n;\n{drop}"),
        format!("SELECT 1 # a comment\n; {drop}"),
        format!("SELECT 1 /* a /* nested */ comment */ ; {drop}"),
        format!("SELECT 1; SELECT 2; {drop}"),
        "SELECT 1; SELECT 2".into(),
        // Unicode: look-alike letters and invisible characters are not keywords or names.
        "SELECT * FROM ｆｉｌｅ('/etc/passwd', 'LineAsString')".into(),
        format!("SELECT 1 /*{}*/ ; {drop}", '\u{2028}'),
        format!("SELECT 1;{}{drop}", '\u{200B}'),
        // Settings and formats that would change the limits or the answer's shape.
        "SELECT 1 SETTINGS max_execution_time = 0".into(),
        "SELECT 1 SETTINGS max_memory_usage = 0, readonly = 0".into(),
        "SELECT * FROM events FORMAT Native".into(),
        "SELECT * FROM events FORMAT JSONEachRow SETTINGS output_format_json_quote_64bit_integers = 1".into(),
        // Other databases, the system tables, dictionaries.
        "SELECT * FROM system.users".into(),
        "SELECT * FROM information_schema.tables".into(),
        "SELECT * FROM default.events".into(),
        "SELECT dictGet('x', 'y', 1)".into(),
        // Memory and time bombs: refused by the gateway, bounded by the engine's limits.
        "SELECT count() FROM numbers_mt(1000000000000)".into(),
        "SELECT * FROM generateRandom('a String') LIMIT 100000000".into(),
    ]
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_and_the_data_stays() {
    let cfg = test_config();
    let db = cfg.clickhouse.database.clone();
    let sys = TestSystem::start(cfg.clone(), GATEWAY).await;

    // Through the gateway: refused, with a reason, and nothing leaks.
    for sql in attacks(&db) {
        let body = serde_json::json!({ "sql": sql }).to_string();
        let (status, answer) = sys.http("POST", "/v1/sql", Some(&body)).await;
        assert_eq!(status, 400, "{sql:?} was not refused: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
        assert!(!answer.to_string().contains("root:"), "{sql:?} leaked: {answer}");
    }

    // Straight at ClickHouse as the read-only user: the engine refuses, whatever the text.
    let ch = reqwest::Client::new();
    let as_reader = |sql: String| {
        ch.post(format!("{}/?database={db}", cfg.clickhouse.url))
            .header("X-ClickHouse-User", &cfg.clickhouse.reader_user)
            .header("X-ClickHouse-Key", &cfg.clickhouse.reader_password)
            .body(sql)
            .send()
    };
    for sql in attacks(&db) {
        // The local engine has no grants, so the system and information_schema tables are readable
        // to it; a real server's grants (config/clickhouse/reader.sql) and the gateway's parse
        // refuse them. A FORMAT clause is harmless to the engine (the gateway refuses it because
        // it would change the answer's shape).
        let engine_allows = [
            "SELECT * FROM system.",
            "SELECT * FROM information_schema.",
            "SELECT * FROM numbers(",
            "SELECT * FROM events FORMAT Native",
        ];
        if engine_allows.iter().any(|p| sql.starts_with(p)) {
            continue;
        }
        let resp = as_reader(sql.clone()).await.expect("ClickHouse answers");
        let status = resp.status().as_u16();
        let code = resp.headers().get("X-ClickHouse-Exception-Code").map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        // Bombs the engine may start are cut short by the reader's limits (rows, bytes, time).
        if sql.contains("numbers_mt(") || sql.contains("generateRandom(") {
            let rows = text.lines().count();
            assert!(status != 200 || rows <= 100_000, "{sql:?}: {rows} rows, past the reader's limits");
            continue;
        }
        assert_ne!(status, 200, "{sql:?} ran as the read-only user: {text}");
        assert!(code.is_some(), "{sql:?}: {status} {text}");
        assert!(!text.contains("root:"), "{sql:?} leaked: {text}");
    }
    // A write over GET is refused whoever asks, and a wrong password is no user.
    let get = ch.get(format!("{}/?query={}", cfg.clickhouse.url, urlencode(&format!("DROP DATABASE {db}"))));
    let resp = get.send().await.unwrap();
    assert_eq!(resp.headers().get("X-ClickHouse-Exception-Code").map(|v| v.to_str().unwrap()), Some("164"));
    let wrong = ch
        .post(&cfg.clickhouse.url)
        .header("X-ClickHouse-User", &cfg.clickhouse.reader_user)
        .header("X-ClickHouse-Key", "not-the-password")
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers().get("X-ClickHouse-Exception-Code").map(|v| v.to_str().unwrap()), Some("516"));

    assert!(!std::path::Path::new("/tmp/sightline-leak").exists(), "INTO OUTFILE wrote a file");

    // The data is intact, and plain reads still work.
    let ok = serde_json::json!({ "sql": "SELECT count() AS n FROM events" }).to_string();
    let (status, answer) = sys.http("POST", "/v1/sql", Some(&ok)).await;
    assert_eq!((status, answer["data"][0]["n"].as_u64()), (200, Some(0)), "{answer}");
    let tables = serde_json::json!({ "sql": "SHOW TABLES" }).to_string();
    let (status, answer) = sys.http("POST", "/v1/sql", Some(&tables)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.to_string().contains("\"events\""), "{answer}");
    sys.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_runs_a_bounded_number_of_queries_at_once() {
    let mut cfg = test_config();
    cfg.gateway.sql_max_concurrent_per_key = 1;
    let sys = TestSystem::start(cfg, GATEWAY).await;
    let slow = serde_json::json!({ "sql": "SELECT sleep(3) AS s" }).to_string();
    let addr = sys.addr;
    let running = tokio::spawn(async move { common::http(addr, "POST", "/v1/sql", Some(&slow)).await });
    // Once the slow query holds the caller's slot (it sleeps 3 s), a second one is refused.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let quick = serde_json::json!({ "sql": "SELECT 1 AS one" }).to_string();
    let (status, refused) = sys.http("POST", "/v1/sql", Some(&quick)).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_queries", "{refused}");
    let (status, answer) = running.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    // The slot is free again.
    let (status, answer) = sys.http("POST", "/v1/sql", Some(&quick)).await;
    assert_eq!((status, answer["data"][0]["one"].as_u64()), (200, Some(1)), "{answer}");
    sys.shutdown().await;
}
