-- The read-only user Sightline's `POST /v1/sql` runs as, for a real ClickHouse server (the bundled
-- chDB adapter that `make services` starts has the same user built in). Run once as an admin with
-- access management, e.g. `clickhouse-client --multiquery < config/clickhouse/reader.sql`, after
-- replacing the password, and put the same name and password in clickhouse.reader_user and
-- clickhouse.reader_password. The limits are gateway.sql_max_seconds and gateway.sql_max_rows.
--
-- readonly = 1 CONST: no write, DDL, SET, or change of any setting (SETTINGS clauses included),
-- and no table function that reaches files or servers; the client cannot lower it.

CREATE SETTINGS PROFILE IF NOT EXISTS sightline_readonly SETTINGS
    readonly = 1 CONST,
    max_execution_time = 10 CONST,
    max_result_rows = 10000 CONST,
    result_overflow_mode = 'break' CONST,
    max_result_bytes = 67108864 CONST,
    max_memory_usage = 1073741824 CONST,
    max_bytes_to_read = 10737418240 CONST,
    output_format_json_quote_64bit_integers = 0 CONST;

CREATE USER IF NOT EXISTS sightline_reader
    IDENTIFIED WITH sha256_password BY 'replace-me'
    SETTINGS PROFILE 'sightline_readonly';

CREATE QUOTA IF NOT EXISTS sightline_reader_quota
    FOR INTERVAL 1 minute MAX queries = 600, MAX execution_time = 120,
    FOR INTERVAL 1 hour MAX result_rows = 10000000, MAX read_bytes = 107374182400
    TO sightline_reader;

-- SELECT on Sightline's database only: not system tables, not other databases.
GRANT SELECT ON sightline.* TO sightline_reader;
