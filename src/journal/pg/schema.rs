//! The journal's tables, created and migrated by cutover: `cutover_journal_schema` holds
//! the version; each migration runs in one transaction under a transaction-scoped lock
//! (released by the commit, so it cannot strand on a pooled connection), so two cutover
//! processes starting at once migrate once.

/// Each step brings the schema from its index to index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: runs (the sealed run record, as `run.json` holds it), entries (each stored line,
    // byte for byte, with the epoch that wrote it), leases (one writer per run).
    "CREATE TABLE cutover_journal_runs (
        run_id text PRIMARY KEY,
        started_ms bigint NOT NULL,
        meta text NOT NULL
     );
     CREATE TABLE cutover_journal_entries (
        run_id text NOT NULL REFERENCES cutover_journal_runs (run_id),
        seq bigint NOT NULL,
        epoch bigint NOT NULL,
        line text NOT NULL,
        PRIMARY KEY (run_id, seq)
     );
     CREATE TABLE cutover_journal_leases (
        run_id text PRIMARY KEY REFERENCES cutover_journal_runs (run_id),
        holder text NOT NULL,
        epoch bigint NOT NULL,
        expires_at timestamptz NOT NULL
     );",
];

/// The version this cutover writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Key of the transaction-scoped lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x0063_7574_6f76_6572; // "cutover"

/// Bring the schema to [`VERSION`]; refuse a schema newer than this cutover.
pub(super) fn migrate(client: &mut postgres::Client) -> Result<(), String> {
    let current = version(client).map_err(|e| e.to_string())?;
    if current == Some(VERSION) {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| e.to_string())?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS cutover_journal_schema (version integer NOT NULL)",
    )
    .map_err(|e| e.to_string())?;
    let row = tx
        .query_opt("SELECT version FROM cutover_journal_schema", &[])
        .map_err(|e| e.to_string())?;
    let mut at: i32 = match row {
        Some(r) => r.get(0),
        None => {
            tx.execute(
                "INSERT INTO cutover_journal_schema (version) VALUES (0)",
                &[],
            )
            .map_err(|e| e.to_string())?;
            0
        }
    };
    if at > VERSION {
        return Err(format!(
            "the journal's schema is version {at}, newer than this cutover knows ({VERSION}): upgrade cutover"
        ));
    }
    while at < VERSION {
        let step = MIGRATIONS.get(at as usize).copied().unwrap_or_default();
        tx.batch_execute(step).map_err(|e| e.to_string())?;
        at += 1;
        tx.execute("UPDATE cutover_journal_schema SET version = $1", &[&at])
            .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

/// The schema's version, `None` before the version table exists.
fn version(client: &mut postgres::Client) -> Result<Option<i32>, postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('cutover_journal_schema') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt("SELECT version FROM cutover_journal_schema", &[])?
        .map(|r| r.get(0)))
}
