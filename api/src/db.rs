//! Connecting to the database and bringing its schema up to date.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Connects to `url` (SQLite or PostgreSQL) with pool settings fit for this server.
/// `max` bounds the pool (default 20 on PostgreSQL, 8 on SQLite).
pub async fn connect(url: &str, max: Option<u32>) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    let sqlite = url.starts_with("sqlite:");
    opts.max_connections(max.unwrap_or(if sqlite { 8 } else { 20 }))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings a connection on every checkout by default: a round trip
        // to SQLite's worker thread, or to PostgreSQL, before each statement.
        // Only one idle long enough for a server or a proxy to drop it is
        // pinged (sqlx still tests each one as it goes back to the pool).
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false);
    if sqlite {
        opts.map_sqlx_sqlite_opts(|o| {
            o.synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
        });
    }
    let mut db = Database::connect(opts).await?;
    db.set_metric_callback(|info| {
        let metrics = crate::metrics::metrics();
        let counter = match statement_kind(&info.statement.sql) {
            Some(Kind::Write) => &metrics.db_writes,
            Some(Kind::Read) => &metrics.db_reads,
            None => return,
        };
        counter.inc();
    });
    if sqlite {
        // WAL lets readers run beside the single writer (it is a property of
        // the file, so one connection sets it for all). sqlx already turns on
        // foreign keys and a busy timeout on every connection.
        use sea_orm::ConnectionTrait;
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

/// What a statement does, as `wayfinder_db_writes_total` and
/// `wayfinder_db_reads_total` count them (statements, not transactions).
enum Kind {
    Write,
    Read,
}

fn statement_kind(sql: &str) -> Option<Kind> {
    let verb = sql.split_whitespace().next().unwrap_or("");
    let is = |verbs: &[&str]| verbs.iter().any(|w| verb.eq_ignore_ascii_case(w));
    if is(&["INSERT", "UPDATE", "DELETE", "REPLACE"]) {
        Some(Kind::Write)
    } else if is(&["SELECT", "WITH"]) {
        Some(Kind::Read)
    } else {
        None
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_pool_is_as_large_as_asked() {
        for (max, want) in [(None, 8), (Some(3), 3)] {
            let db = super::connect("sqlite::memory:", max)
                .await
                .expect("connect");
            let got = db
                .get_sqlite_connection_pool()
                .options()
                .get_max_connections();
            assert_eq!(got, want, "asked for {max:?}");
        }
    }
}
