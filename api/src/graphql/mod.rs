//! The GraphQL API: schema building, limits, and the resolvers split by domain
//! (`query/`, `mutation/`, `subscription/`, with the object types in `types/`).
//!
//! Resolvers stay thin: they read the caller from the context, call one
//! service function and map its rows to schema types.

pub mod mutation;
pub mod operation;
pub mod query;
pub mod subscription;
pub mod types;

use async_graphql::{Context, Schema, SchemaBuilder, connection::PageInfo};
use uuid::Uuid;

use crate::{
    auth::{Caller, OperatorScope, OrgScope},
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
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
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
    /// The caller's org scope: `UNAUTHENTICATED` for the public, `FORBIDDEN` for the operator.
    fn scope(&self) -> GqlResult<OrgScope>;
    /// The operator's scope: `UNAUTHENTICATED` for the public, `FORBIDDEN` for an org's key.
    fn operator(&self) -> GqlResult<OperatorScope>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> GqlResult<&AppState> {
        self.data::<AppState>()
            .map_err(|_| GqlError::from(AppError::internal("schema built without state")))
    }

    fn caller(&self) -> Caller {
        self.data_opt::<Caller>()
            .cloned()
            .unwrap_or(Caller::Public {
                session_token: None,
            })
    }

    fn scope(&self) -> GqlResult<OrgScope> {
        Ok(*self.caller().scope()?)
    }

    fn operator(&self) -> GqlResult<OperatorScope> {
        Ok(*self.caller().operator()?)
    }
}

/// A connection type made by [`connections!`](types): edges with cursors, nodes, page info.
pub trait Paged: Sized {
    /// The item type.
    type Node;
    /// Builds the connection from (cursor, node) pairs.
    fn assemble(edges: Vec<(String, Self::Node)>, page_info: PageInfo) -> Self;
}

fn page_info(cursors: &[String], has_previous: bool, has_next: bool) -> PageInfo {
    PageInfo {
        has_previous_page: has_previous,
        has_next_page: has_next,
        start_cursor: cursors.first().cloned(),
        end_cursor: cursors.last().cloned(),
    }
}

/// A relay-style connection of `page`, cursors being row ids.
pub fn connection<M, C>(page: Page<M>, id: impl Fn(&M) -> Uuid) -> C
where
    C: Paged,
    C::Node: From<M>,
{
    let edges: Vec<(String, C::Node)> = page
        .items
        .into_iter()
        .map(|m| (id(&m).to_string(), C::Node::from(m)))
        .collect();
    let cursors: Vec<String> = edges.iter().map(|(c, _)| c.clone()).collect();
    C::assemble(edges, page_info(&cursors, page.has_previous, page.has_next))
}

/// Like [`connection`], for types whose mapping can fail on corrupt rows.
pub fn try_connection<M, C>(page: Page<M>, id: impl Fn(&M) -> Uuid) -> Result<C, AppError>
where
    C: Paged,
    C::Node: TryFrom<M, Error = AppError>,
{
    let mut edges = Vec::with_capacity(page.items.len());
    for m in page.items {
        edges.push((id(&m).to_string(), C::Node::try_from(m)?));
    }
    let cursors: Vec<String> = edges.iter().map(|(c, _)| c.clone()).collect();
    Ok(C::assemble(
        edges,
        page_info(&cursors, page.has_previous, page.has_next),
    ))
}

/// The complexity of a list field: its children once per item asked for.
pub fn list_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.unwrap_or(20).clamp(1, 100) as usize;
    1 + items.saturating_mul(child_complexity)
}
