//! SeaORM migrations, one file per change. Each runs forward on SQLite and
//! PostgreSQL; `wayfinder migrate` (and every `wayfinder serve`) applies them.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_kb_fulltext;
mod m20261122_000003_support;
mod m20261201_000004_operator_keys;
mod m20261201_000005_server_settings;
mod m20261201_000006_identity;
mod m20261201_000007_guidance;
mod m20261201_000008_passages;
mod m20261201_000009_tour_runs;

/// The ordered list of every migration.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_kb_fulltext::Migration),
            Box::new(m20261122_000003_support::Migration),
            Box::new(m20261201_000004_operator_keys::Migration),
            Box::new(m20261201_000005_server_settings::Migration),
            Box::new(m20261201_000006_identity::Migration),
            Box::new(m20261201_000007_guidance::Migration),
            Box::new(m20261201_000008_passages::Migration),
            Box::new(m20261201_000009_tour_runs::Migration),
        ]
    }
}
