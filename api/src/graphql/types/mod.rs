//! The object types of the schema, mapped from entities. Field docs become
//! the schema's descriptions.

mod chat;
mod connections;
mod content;
mod end_user;
mod kb;
mod operator;
mod org;
mod support;
mod tour;
mod webhook;
mod widget;

pub use chat::*;
pub use connections::*;
pub use content::*;
pub use end_user::*;
pub use kb::*;
pub use operator::*;
pub use org::*;
pub use support::*;
pub use tour::*;
pub use webhook::*;
pub use widget::*;

/// `Deleted` is what delete mutations return.
#[derive(async_graphql::SimpleObject)]
pub struct Deleted {
    /// The id of the deleted object.
    pub id: uuid::Uuid,
}
