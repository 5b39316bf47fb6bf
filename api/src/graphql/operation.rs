//! What an operation will run, read before it runs: its kind and how many
//! root fields it selects. The rate limits charge one unit per root field,
//! so `mutation { a0: startTurn(…) a1: startTurn(…) … }` costs what two
//! hundred requests cost, and public callers may only run small operations.
//!
//! Root fields are counted as async-graphql runs them: every field selection
//! once, including exact repeats (`{ a a }` resolves `a` twice and only
//! merges the results), and a fragment's fields once per spread. `__typename`
//! costs nothing. Counting stops at [`MAX_COUNTED`], far above any limit, so a
//! document of nested spreads cannot make the count itself expensive.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};

use crate::{auth::Caller, error::AppError};

/// The kind and size of the operation a request selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub kind: OperationType,
    /// Root field selections as they will run (repeats and every fragment
    /// spread counted), `__typename` excluded.
    pub root_fields: usize,
    /// The deepest nesting of introspection lists (`types`, `fields`, `args`,
    /// …) anywhere in the operation.
    pub introspection_lists: usize,
    /// The root selection set is one field, not an introspection field (what
    /// a subscription must be: async-graphql runs no root fragment of a
    /// subscription, and answers a root `__typename` with an error on every
    /// event).
    pub one_plain_root_field: bool,
}

impl Shape {
    /// Units the operation takes from a rate budget (at least one: even an
    /// empty or failing operation was a request).
    pub fn cost(&self) -> u32 {
        u32::try_from(self.root_fields.max(1)).unwrap_or(u32::MAX)
    }
}

/// The shape of `request`'s operation, parsing its document once (async-graphql
/// keeps the parsed document for execution). `None` when the document does not
/// parse or names no operation it holds: execution then reports that error.
pub fn shape(request: &mut async_graphql::Request) -> Option<Shape> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    shape_of(doc, name.as_deref())
}

fn shape_of(doc: &ExecutableDocument, operation_name: Option<&str>) -> Option<Shape> {
    let op = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    let mut count = Count::default();
    collect(doc, &op.node.selection_set.node, &mut count, 0);
    let mut steps = 0;
    let root = &op.node.selection_set.node.items;
    let one_plain_root_field = matches!(root.as_slice(),
        [item] if matches!(&item.node, Selection::Field(f) if !f.node.name.node.starts_with("__")));
    Some(Shape {
        kind: op.node.ty,
        root_fields: count.fields,
        introspection_lists: lists(doc, &op.node.selection_set.node, 0, 0, &mut steps),
        one_plain_root_field,
    })
}

/// Where counting stops: above every limit, below any cost worth computing.
const MAX_COUNTED: usize = 100_000;
/// Deepest chain of fragment spreads followed (validation rejects cycles;
/// this bounds the count before validation runs).
const MAX_SPREAD_DEPTH: usize = 32;

/// What counting found, and how much work it took.
#[derive(Default)]
struct Count {
    fields: usize,
    /// Selections visited, spreads included: bounded, so that spreads of
    /// field-less fragments cannot make counting itself expensive.
    steps: usize,
}

/// Adds the root field selections `set` makes to `count`, following every
/// fragment spread (each spread counts its fields again).
fn collect(doc: &ExecutableDocument, set: &SelectionSet, count: &mut Count, depth: usize) {
    for item in &set.items {
        if count.steps >= MAX_COUNTED {
            // Far past every limit: what matters is that it is refused.
            count.fields = count.fields.max(MAX_COUNTED);
            return;
        }
        count.steps += 1;
        match &item.node {
            Selection::Field(field) => {
                if field.node.name.node.as_str() != "__typename" {
                    count.fields += 1;
                }
            }
            Selection::FragmentSpread(spread) => {
                if depth < MAX_SPREAD_DEPTH
                    && let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node)
                {
                    collect(doc, &fragment.node.selection_set.node, count, depth + 1);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(doc, &inline.node.selection_set.node, count, depth + 1);
            }
        }
    }
}

/// Introspection fields that return lists. They carry no complexity cost in
/// async-graphql, so `types { fields { type { fields { type { fields … } } } } }`
/// multiplies the response by the schema's size at every level.
const INTROSPECTION_LISTS: &[&str] = &[
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

/// Most introspection lists one path may nest: GraphiQL's (and every
/// client's) introspection query nests three (`types { fields { args } }`).
pub const MAX_INTROSPECTION_LISTS: usize = 3;

/// The deepest nesting of [`INTROSPECTION_LISTS`] below `set`, which is
/// `depth` lists deep; `steps` bounds the walk like [`Count::steps`].
fn lists(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    depth: usize,
    spreads: usize,
    steps: &mut usize,
) -> usize {
    let mut deepest = depth;
    for item in &set.items {
        *steps += 1;
        if *steps >= MAX_COUNTED {
            return deepest.max(MAX_COUNTED);
        }
        let below = match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                let d =
                    depth + usize::from(INTROSPECTION_LISTS.contains(&field.name.node.as_str()));
                lists(doc, &field.selection_set.node, d, spreads, steps)
            }
            Selection::FragmentSpread(spread) if spreads < MAX_SPREAD_DEPTH => doc
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(depth, |f| {
                    lists(doc, &f.node.selection_set.node, depth, spreads + 1, steps)
                }),
            Selection::FragmentSpread(_) => depth,
            Selection::InlineFragment(inline) => {
                lists(doc, &inline.node.selection_set.node, depth, spreads, steps)
            }
        };
        deepest = deepest.max(below);
    }
    deepest
}

/// Refuses an operation too large for its caller: a subscription selects one
/// root field (as the GraphQL specification requires; each is a stream of its
/// own); a public mutation one field; a public query at most
/// `public_max_query_fields`.
pub fn admit(
    caller: &Caller,
    shape: &Shape,
    public_max_query_fields: usize,
) -> Result<(), AppError> {
    let public = matches!(caller, Caller::Public { .. });
    let n = shape.root_fields;
    if shape.introspection_lists > MAX_INTROSPECTION_LISTS {
        return Err(AppError::BadRequest(format!(
            "introspection may nest at most {MAX_INTROSPECTION_LISTS} lists (types, fields, args, …)"
        )));
    }
    match shape.kind {
        OperationType::Subscription if n > 1 => Err(AppError::BadRequest(format!(
            "a subscription selects exactly one root field (this one selects {n})"
        ))),
        OperationType::Subscription if !shape.one_plain_root_field => {
            Err(AppError::BadRequest(
                "a subscription selects exactly one root field, written out: not `__typename`, not a fragment"
                    .into(),
            ))
        }
        OperationType::Mutation if public && n > 1 => Err(AppError::BadRequest(format!(
            "a public request runs one mutation field per operation (this one has {n}); send one operation per message"
        ))),
        OperationType::Query if public && n > public_max_query_fields => {
            Err(AppError::BadRequest(format!(
                "a public query selects at most {public_max_query_fields} root fields (this one selects {n})"
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(query: &str) -> Option<Shape> {
        shape(&mut async_graphql::Request::new(query))
    }

    #[test]
    fn counts_aliases_and_fragments() {
        let s = of(
            "mutation { a: startTurn(input: {}) { turnId } b: startTurn(input: {}) { turnId } }",
        );
        assert_eq!(
            s,
            Some(Shape {
                kind: OperationType::Mutation,
                root_fields: 2,
                introspection_lists: 0,
                one_plain_root_field: false,
            })
        );
        // Repeats run again, and each spread runs its fragment's fields again.
        let s = of(
            "query { ...F ...F ... on Query { c: org { id } } __typename } fragment F on Query { a: bots { id } b: org { id } }",
        );
        assert_eq!(s.map(|s| s.root_fields), Some(5));
        assert_eq!(
            of("{ org { id } org { id } org { id } }").map(|s| s.root_fields),
            Some(3)
        );
        // A cycle of spreads ends (validation refuses it later).
        let s = of(
            "query { ...F } fragment F on Query { a: org { id } ...G } fragment G on Query { ...F }",
        );
        assert!(s.is_some_and(|s| s.root_fields <= MAX_SPREAD_DEPTH));
        assert_eq!(of("{ __typename }").map(|s| s.cost()), Some(1));
    }

    #[test]
    fn nested_spreads_of_empty_fragments_stay_cheap_to_count() {
        let mut doc = String::from("query { ...F0 }");
        for level in 0..MAX_SPREAD_DEPTH {
            let spreads = format!("...F{} ", level + 1).repeat(10);
            doc.push_str(&format!(" fragment F{level} on Query {{ {spreads} }}"));
        }
        doc.push_str(&format!(
            " fragment F{MAX_SPREAD_DEPTH} on Query {{ __typename }}"
        ));
        let started = std::time::Instant::now();
        let s = of(&doc);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(
            s.is_some_and(|s| s.root_fields >= MAX_COUNTED),
            "refused as huge"
        );
    }

    #[test]
    fn introspection_may_not_multiply_itself() {
        let deep =
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
        let shape = of(deep).unwrap_or(Shape {
            kind: OperationType::Query,
            root_fields: 0,
            introspection_lists: 0,
            one_plain_root_field: true,
        });
        assert_eq!(shape.introspection_lists, 3 + 1);
        let key = Caller::Org(crate::auth::OrgScope::operator(uuid::Uuid::nil()));
        assert!(admit(&key, &shape, 3).is_err(), "refused for every caller");
        let graphiql = "query { __schema { types { ...T } directives { args { ...V } } } } fragment T on __Type { fields { args { ...V } type { ...R } } inputFields { ...V } interfaces { ...R } enumValues { name } possibleTypes { ...R } } fragment V on __InputValue { type { ...R } } fragment R on __Type { kind name ofType { kind name ofType { kind name } } }";
        let shape = of(graphiql).unwrap_or(Shape {
            kind: OperationType::Query,
            root_fields: 0,
            introspection_lists: 9,
            one_plain_root_field: true,
        });
        assert_eq!(shape.introspection_lists, 3);
        assert!(admit(&key, &shape, 3).is_ok());
    }

    #[test]
    fn picks_the_named_operation() {
        let q = "query A { a b } subscription B { x }";
        let mut req = async_graphql::Request::new(q).operation_name("B");
        assert_eq!(
            shape(&mut req).map(|s| (s.kind, s.root_fields)),
            Some((OperationType::Subscription, 1))
        );
        assert_eq!(of(q), None, "two operations and no name");
        assert_eq!(of("{ nope"), None);
    }

    #[test]
    fn public_callers_run_small_operations() {
        let public = Caller::Public {
            session_token: None,
        };
        let shape = |kind, root_fields| Shape {
            kind,
            root_fields,
            introspection_lists: 0,
            one_plain_root_field: root_fields == 1,
        };
        assert!(admit(&public, &shape(OperationType::Mutation, 1), 3).is_ok());
        assert!(admit(&public, &shape(OperationType::Mutation, 2), 3).is_err());
        assert!(admit(&public, &shape(OperationType::Query, 3), 3).is_ok());
        assert!(admit(&public, &shape(OperationType::Query, 4), 3).is_err());
        assert!(admit(&public, &shape(OperationType::Subscription, 2), 3).is_err());
    }

    #[test]
    fn a_subscription_is_one_field_written_out() {
        let key = Caller::Org(crate::auth::OrgScope::operator(uuid::Uuid::nil()));
        let admitted = |q: &str| of(q).is_some_and(|s| admit(&key, &s, 3).is_ok());
        assert!(admitted("subscription { orgEvents { kind } }"));
        assert!(admitted(
            "subscription { e: orgEvents { ...K } } fragment K on OrgEvent { kind }"
        ));
        assert!(!admitted("subscription { __typename orgEvents { kind } }"));
        assert!(!admitted("subscription { __typename }"));
        assert!(!admitted(
            "subscription { ...S } fragment S on Subscription { orgEvents { kind } }"
        ));
        assert!(!admitted(
            "subscription { ... on Subscription { orgEvents { kind } } }"
        ));
        assert!(!admitted(
            "subscription { a: orgEvents { kind } b: orgEvents { kind } }"
        ));
    }
}
