//! Migrations for a ClickHouse cluster (`clickhouse.cluster`): every DDL statement runs
//! `ON CLUSTER`, and every table is created with the replicated form of its engine
//! (`ReplacingMergeTree` → `ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/<table>', '{replica}')`),
//! so each replica of the cluster holds the same tables and inserts replicate, deduplicated by
//! the same tokens (`replicated_deduplication_window` in place of the single-server setting).
//! The migration files stay written for one server; this rewrites them as they are applied.

/// The statement as it runs on `cluster` (unchanged when `cluster` is empty).
pub fn on_cluster(stmt: &str, cluster: &str) -> String {
    if cluster.is_empty() {
        return stmt.to_string();
    }
    let on = format!(" ON CLUSTER '{}'", cluster.replace('\'', ""));
    let mut s = stmt.to_string();
    // The object name follows one of these heads; ON CLUSTER goes right after it.
    const HEADS: [&str; 7] = [
        "CREATE TABLE IF NOT EXISTS ",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS ",
        "CREATE VIEW IF NOT EXISTS ",
        "CREATE DATABASE IF NOT EXISTS ",
        "ALTER TABLE ",
        "DROP TABLE IF EXISTS ",
        "DROP VIEW IF EXISTS ",
    ];
    let trimmed = s.trim_start();
    let lead = s.len() - trimmed.len();
    let Some(head) = HEADS.iter().find(|h| trimmed.starts_with(**h)) else { return s };
    let name_start = lead + head.len();
    let name_len =
        s[name_start..].find(|c: char| c.is_whitespace() || c == '(').unwrap_or(s.len() - name_start);
    let name = s[name_start..name_start + name_len].trim_matches('`').to_string();
    s.insert_str(name_start + name_len, &on);
    if head.starts_with("CREATE TABLE") {
        s = replicate_engine(&s, &name);
    }
    s.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
}

/// `ENGINE = <X>MergeTree[(args)]` → `ENGINE = Replicated<X>MergeTree(path, replica[, args])`.
fn replicate_engine(stmt: &str, table: &str) -> String {
    let Some(at) = stmt.find("ENGINE = ") else { return stmt.to_string() };
    let engine_start = at + "ENGINE = ".len();
    let rest = &stmt[engine_start..];
    let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let engine = &rest[..name_len];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return stmt.to_string();
    }
    let keeper = format!("'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'");
    let after = &rest[name_len..];
    let (args, tail) = match after.strip_prefix('(') {
        Some(inner) => {
            let close = inner.find(')').unwrap_or(inner.len());
            let args = inner[..close].trim();
            let args = if args.is_empty() { keeper.clone() } else { format!("{keeper}, {args}") };
            (args, inner.get(close + 1..).unwrap_or(""))
        }
        None => (keeper, after),
    };
    format!("{}Replicated{engine}({args}){tail}", &stmt[..engine_start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_replicated_and_every_ddl_runs_on_the_cluster() {
        let create = "CREATE TABLE IF NOT EXISTS streams (id String, updated_at DateTime64(3))\nENGINE = ReplacingMergeTree(updated_at)\nORDER BY id";
        assert_eq!(
            on_cluster(create, "prod"),
            "CREATE TABLE IF NOT EXISTS streams ON CLUSTER 'prod' (id String, updated_at DateTime64(3))\nENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/streams', '{replica}', updated_at)\nORDER BY id"
        );
        let bare = "CREATE TABLE IF NOT EXISTS dlq (x UInt8) ENGINE = MergeTree ORDER BY x";
        assert_eq!(
            on_cluster(bare, "prod"),
            "CREATE TABLE IF NOT EXISTS dlq ON CLUSTER 'prod' (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/dlq', '{replica}') ORDER BY x"
        );
        assert_eq!(
            on_cluster(
                "ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 1000",
                "prod"
            ),
            "ALTER TABLE events ON CLUSTER 'prod' MODIFY SETTING replicated_deduplication_window = 1000"
        );
        assert_eq!(
            on_cluster("CREATE MATERIALIZED VIEW IF NOT EXISTS scenes_mv TO scenes AS SELECT 1", "prod"),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS scenes_mv ON CLUSTER 'prod' TO scenes AS SELECT 1"
        );
        // One server: as written.
        assert_eq!(on_cluster(create, ""), create);
    }

    #[test]
    fn every_shipped_migration_statement_is_rewritten() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/migrations");
        let mut tables = 0;
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let sql = std::fs::read_to_string(entry.path()).unwrap();
            for stmt in crate::migrations::split_statements(&sql) {
                let out = on_cluster(&stmt, "c1");
                assert!(out.contains(" ON CLUSTER 'c1'"), "not on the cluster: {stmt}");
                assert!(!out.contains("non_replicated"), "{out}");
                if stmt.trim_start().starts_with("CREATE TABLE") {
                    tables += 1;
                    assert!(out.contains("ENGINE = Replicated"), "not replicated: {out}");
                }
            }
        }
        assert!(tables >= 9, "{tables} tables");
    }
}
