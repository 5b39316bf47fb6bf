//! The GraphQL API: schema building, limits, and the resolvers split by domain
//! (`query/`, `mutation/`, `subscription/`, with the object types in `types/`).
//!
//! Resolvers stay thin: they read the caller from the context, call one
//! service function and map its rows to schema types.

pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use async_graphql::{
    Context, OutputType, Schema, SchemaBuilder,
    connection::{Connection, Edge},
};
use uuid::Uuid;

use crate::{
    auth::{Caller, OrgScope},
    config::Config,
    error::{AppError, GqlError, GqlResult},
    service::Page,
    state::AppState,
};

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

/// The schema served at `/graphql`.
pub type WayfinderSchema = Schema<Query, Mutation, Subscription>;

/// The schema with its limits, before any data is attached.
pub fn builder(config: &Config) -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_depth(config.max_query_depth)
        .limit_complexity(config.max_query_complexity)
        .limit_recursive_depth(64)
        .limit_directives(20)
}

/// The schema in SDL, sorted: what `schema.graphql` holds.
pub fn sdl() -> String {
    let schema = builder(&Config::defaults()).finish();
    schema.sdl_with_options(
        async_graphql::SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// What resolvers read from the context.
pub trait ContextExt {
    /// The shared application state.
    fn state(&self) -> GqlResult<&AppState>;
    /// The caller (public when the transport attached none).
    fn caller(&self) -> Caller;
    /// The caller's org scope, or `UNAUTHENTICATED`.
    fn scope(&self) -> GqlResult<OrgScope>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> GqlResult<&AppState> {
        self.data::<AppState>()
            .map_err(|_| GqlError::from(AppError::internal("schema built without state")))
    }

    fn caller(&self) -> Caller {
        self.data_opt::<Caller>().cloned().unwrap_or(Caller::Public {
            session_token: None,
        })
    }

    fn scope(&self) -> GqlResult<OrgScope> {
        Ok(*self.caller().scope()?)
    }
}

/// A relay-style connection of `page`, cursors being row ids.
pub fn connection<M, T>(page: Page<M>, id: impl Fn(&M) -> Uuid) -> Connection<String, T>
where
    T: OutputType + From<M>,
{
    let mut conn = Connection::new(page.has_previous, page.has_next);
    conn.edges.extend(
        page.items
            .into_iter()
            .map(|m| Edge::new(id(&m).to_string(), T::from(m))),
    );
    conn
}

/// Like [`connection`], for types whose mapping can fail on corrupt rows.
pub fn try_connection<M, T>(
    page: Page<M>,
    id: impl Fn(&M) -> Uuid,
) -> Result<Connection<String, T>, AppError>
where
    T: OutputType + TryFrom<M, Error = AppError>,
{
    let mut conn = Connection::new(page.has_previous, page.has_next);
    for m in page.items {
        let cursor = id(&m).to_string();
        conn.edges.push(Edge::new(cursor, T::try_from(m)?));
    }
    Ok(conn)
}
