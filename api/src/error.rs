//! One error type that decides what a client sees.
//!
//! Services return [`AppError`]. Each variant documents the `code` extension a
//! GraphQL client receives. Database and internal failures are logged with
//! their cause and shown to clients only as a generic message, so no SQL,
//! path or stack detail ever leaks.

use async_graphql::ErrorExtensions;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `UNAUTHENTICATED`: no API key, a wrong one, or a public caller on a dashboard operation.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// `FORBIDDEN`: authenticated, but this caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// `NOT_FOUND`: no such object in the caller's org (another org's id looks exactly like this).
    #[error("{what} not found")]
    NotFound {
        what: &'static str,
        /// The input field that named the missing object, when there was one.
        field: Option<&'static str>,
    },
    /// `BAD_USER_INPUT`: a field failed validation; `field` names it.
    #[error("{field}: {message}")]
    BadInput { field: String, message: String },
    /// `PLAN_REQUIRED`: the org's plan does not include this feature.
    #[error("this needs the {required} plan or higher")]
    PlanRequired { required: &'static str },
    /// `RATE_LIMITED`: too many operations; `retryAfter` says in how many seconds one more fits.
    #[error("You are going a little fast: please try again in {retry_after} s.")]
    RateLimited { retry_after: u64 },
    /// `TOO_MANY_SOCKETS` (HTTP 429 on the websocket upgrade): the client's address already holds its most graphql-ws sockets on this replica; close one first.
    #[error(
        "too many open sockets from this address (at most {max}): close one before opening another"
    )]
    TooManySockets { max: usize },
    /// `BAD_REQUEST`: the request as a whole is refused before it runs (too many fields for a public caller, …).
    #[error("{0}")]
    BadRequest(String),
    /// `INTERNAL`: a database or server failure; the cause is logged, not shown.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// A validation failure on `field`.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A missing object of kind `what`.
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound { what, field: None }
    }

    /// A missing object named by input field `field`.
    pub fn not_found_in(what: &'static str, field: &'static str) -> Self {
        Self::NotFound {
            what,
            field: Some(field),
        }
    }

    /// A failure whose cause must be logged but never shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::BadInput { .. } => "BAD_USER_INPUT",
            Self::PlanRequired { .. } => "PLAN_REQUIRED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::TooManySockets { .. } => "TOO_MANY_SOCKETS",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(format!("database: {err}"))
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(err: sea_orm::TransactionError<AppError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if let Self::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::BadInput { field, .. } => ext.set("field", field.as_str()),
                Self::NotFound { field: Some(f), .. } => ext.set("field", *f),
                Self::PlanRequired { required } => ext.set("requiredPlan", *required),
                Self::RateLimited { retry_after } => ext.set("retryAfter", *retry_after),
                _ => {}
            }
        })
    }
}

/// The error a resolver returns: an [`AppError`] already rendered with its
/// `code` extension. It deliberately has no `Display`, so that converting it
/// into `async_graphql::Error` keeps the extensions instead of going through
/// async-graphql's message-only blanket conversion.
#[derive(Clone, Debug)]
pub struct GqlError(async_graphql::Error);

/// What resolvers return.
pub type GqlResult<T> = Result<T, GqlError>;

impl From<AppError> for GqlError {
    fn from(err: AppError) -> Self {
        Self(err.extend())
    }
}

impl From<async_graphql::Error> for GqlError {
    fn from(err: async_graphql::Error) -> Self {
        Self(err)
    }
}

impl From<sea_orm::DbErr> for GqlError {
    fn from(err: sea_orm::DbErr) -> Self {
        AppError::from(err).into()
    }
}

impl From<GqlError> for async_graphql::Error {
    fn from(err: GqlError) -> Self {
        err.0
    }
}
