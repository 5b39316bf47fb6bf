//! A full-text index over knowledge-base articles, for retrieval
//! (`api/src/turn/retrieval/fulltext.rs`). Each engine gets its own, in raw
//! SQL, because neither is expressible in SeaQuery:
//!
//! - SQLite: an external-content FTS5 table `kb_articles_fts` over
//!   `kb_articles` (title, body), Porter stemming over `unicode61` with
//!   diacritics folded. External content keeps one copy of the text; three
//!   triggers keep the index in step with every insert, update and delete
//!   (foreign-key cascades included), inside the writing transaction. The
//!   index is keyed by `kb_articles.rowid`: `VACUUM` may renumber the rowids
//!   of a table without an INTEGER PRIMARY KEY, so after a `VACUUM` run
//!   `INSERT INTO kb_articles_fts(kb_articles_fts) VALUES('rebuild')`.
//! - PostgreSQL: a stored generated column `search_vector` (title as weight
//!   A, body as weight B, `english` configuration) with a GIN index
//!   (`fastupdate` off, so searches never wade through a pending list). The
//!   database computes the column on every write, so it cannot drift.
//!
//! Existing articles are indexed by the migration itself (FTS5 `rebuild`; on
//! PostgreSQL adding a stored generated column computes it for every row).

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE_UP: &[&str] = &[
    "CREATE VIRTUAL TABLE kb_articles_fts USING fts5(
        title, body,
        content = 'kb_articles', content_rowid = 'rowid',
        tokenize = 'porter unicode61 remove_diacritics 2'
    )",
    "CREATE TRIGGER kb_articles_fts_after_insert AFTER INSERT ON kb_articles BEGIN
        INSERT INTO kb_articles_fts(rowid, title, body) VALUES (new.rowid, new.title, new.body);
    END",
    "CREATE TRIGGER kb_articles_fts_after_delete AFTER DELETE ON kb_articles BEGIN
        INSERT INTO kb_articles_fts(kb_articles_fts, rowid, title, body)
            VALUES ('delete', old.rowid, old.title, old.body);
    END",
    "CREATE TRIGGER kb_articles_fts_after_update AFTER UPDATE OF title, body ON kb_articles BEGIN
        INSERT INTO kb_articles_fts(kb_articles_fts, rowid, title, body)
            VALUES ('delete', old.rowid, old.title, old.body);
        INSERT INTO kb_articles_fts(rowid, title, body) VALUES (new.rowid, new.title, new.body);
    END",
    "INSERT INTO kb_articles_fts(kb_articles_fts) VALUES ('rebuild')",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS kb_articles_fts_after_update",
    "DROP TRIGGER IF EXISTS kb_articles_fts_after_delete",
    "DROP TRIGGER IF EXISTS kb_articles_fts_after_insert",
    "DROP TABLE IF EXISTS kb_articles_fts",
];

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE kb_articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(body, '')), 'B')
    ) STORED",
    // fastupdate off: articles are written rarely and searched on every chat
    // turn, and a pending list would be scanned linearly by every search
    // until the next vacuum.
    "CREATE INDEX idx_kb_articles_search_vector ON kb_articles USING GIN (search_vector)
        WITH (fastupdate = off)",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS idx_kb_articles_search_vector",
    "ALTER TABLE kb_articles DROP COLUMN IF EXISTS search_vector",
];

/// Runs `statements` one by one (PostgreSQL's extended protocol takes one per call).
async fn run(m: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        match m.get_database_backend() {
            DbBackend::Sqlite => run(m, SQLITE_UP).await,
            DbBackend::Postgres => run(m, POSTGRES_UP).await,
            other => Err(DbErr::Migration(format!(
                "no full-text index for {other:?}"
            ))),
        }
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        match m.get_database_backend() {
            DbBackend::Sqlite => run(m, SQLITE_DOWN).await,
            DbBackend::Postgres => run(m, POSTGRES_DOWN).await,
            other => Err(DbErr::Migration(format!(
                "no full-text index for {other:?}"
            ))),
        }
    }
}
