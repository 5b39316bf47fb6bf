//! Semantic retrieval: passages with their vectors, and revisions that keep
//! every replica's in-memory index current.
//!
//! - `kb_passages`: an article's passages (position, text) and each one's
//!   vector (little-endian `f32`s, as a blob/`bytea`) with the model that
//!   made it and its dimension. Vectors of another model are never compared
//!   with the current one's; they are recomputed.
//! - `kb_articles.embedding_model`: the model whose passages the article
//!   has, `NULL` until embedded (and again after its text changes).
//! - `knowledge_bases.revision` / `kb_articles.revision`: every change to a
//!   knowledge base's articles (or their vectors) increases the knowledge
//!   base's revision and stamps the article with it, so a replica compares
//!   one number per knowledge base before each search and reloads only the
//!   articles whose revision moved.
//! - `kb_articles.source_path`: the file an article was imported from
//!   (`wayfinder kb import`), unique per knowledge base, so a second import
//!   updates instead of duplicating.
//! - The database full-text index of `m20261122_000002_kb_fulltext` is
//!   dropped: keyword ranking now runs in process on per-org statistics
//!   (`api/src/turn/retrieval/bm25.rs`), and the index's triggers only cost
//!   writes.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KbPassages {
    Table,
    Id,
    OrgId,
    ArticleId,
    Position,
    Text,
    Model,
    Dimension,
    Vector,
    CreatedAt,
}

#[derive(DeriveIden)]
enum KbArticles {
    Table,
    Id,
}

const SQLITE_DROP_FTS: &[&str] = &[
    "DROP TRIGGER IF EXISTS kb_articles_fts_after_update",
    "DROP TRIGGER IF EXISTS kb_articles_fts_after_delete",
    "DROP TRIGGER IF EXISTS kb_articles_fts_after_insert",
    "DROP TABLE IF EXISTS kb_articles_fts",
];

const POSTGRES_DROP_FTS: &[&str] = &[
    "DROP INDEX IF EXISTS idx_kb_articles_search_vector",
    "ALTER TABLE kb_articles DROP COLUMN IF EXISTS search_vector",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let drop_fts = match m.get_database_backend() {
            DbBackend::Postgres => POSTGRES_DROP_FTS,
            _ => SQLITE_DROP_FTS,
        };
        for sql in drop_fts {
            m.get_connection().execute_unprepared(sql).await?;
        }
        let add = |table: &'static str, col: ColumnDef| {
            Table::alter().table(table).add_column(col).to_owned()
        };
        m.alter_table(add(
            "knowledge_bases",
            big_integer("revision").default(0).take(),
        ))
        .await?;
        m.alter_table(add(
            "kb_articles",
            big_integer("revision").default(0).take(),
        ))
        .await?;
        m.alter_table(add("kb_articles", string_null("embedding_model").take()))
            .await?;
        m.alter_table(add("kb_articles", string_null("source_path").take()))
            .await?;
        m.create_index(
            Index::create()
                .name("idx_kb_articles_source_path")
                .table("kb_articles")
                .col("knowledge_base_id")
                .col("source_path")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(KbPassages::Table)
                .col(uuid(KbPassages::Id).primary_key())
                .col(uuid(KbPassages::OrgId))
                .col(uuid(KbPassages::ArticleId))
                .col(integer(KbPassages::Position))
                .col(text(KbPassages::Text))
                .col(string(KbPassages::Model))
                .col(integer(KbPassages::Dimension))
                .col(blob(KbPassages::Vector))
                .col(timestamp_with_time_zone(KbPassages::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(KbPassages::Table, KbPassages::ArticleId)
                        .to(KbArticles::Table, KbArticles::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_kb_passages_article")
                .table(KbPassages::Table)
                .col(KbPassages::ArticleId)
                .col(KbPassages::Model)
                .col(KbPassages::Position)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_kb_articles_kb_revision")
                .table("kb_articles")
                .col("knowledge_base_id")
                .col("revision")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_kb_articles_embedding_model")
                .table("kb_articles")
                .col("embedding_model")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(KbPassages::Table).to_owned())
            .await?;
        // The full-text index is not rebuilt: nothing reads it any more.
        for idx in [
            "idx_kb_articles_kb_revision",
            "idx_kb_articles_embedding_model",
            "idx_kb_articles_source_path",
        ] {
            m.drop_index(Index::drop().name(idx).table("kb_articles").to_owned())
                .await?;
        }
        for (table, col) in [
            ("kb_articles", "source_path"),
            ("kb_articles", "embedding_model"),
            ("kb_articles", "revision"),
            ("knowledge_bases", "revision"),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
