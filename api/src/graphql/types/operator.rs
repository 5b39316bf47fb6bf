//! What the operator-only operations answer.

use async_graphql::SimpleObject;
use uuid::Uuid;

use super::{CreatedApiKey, LedgerEntry, Org};
use crate::service::credits::Adjustment;

/// A new org with its first API key, shown this once.
#[derive(SimpleObject)]
pub struct CreatedOrg {
    /// The org.
    pub org: Org,
    /// Its first API key (`wf_live_…`): hand it to the org; it cannot be shown again.
    pub api_key: CreatedApiKey,
}

/// What a grant or revocation did to an org's credits.
#[derive(SimpleObject)]
pub struct CreditAdjustment {
    /// The org.
    pub org_id: Uuid,
    /// Credits asked for.
    pub requested: i64,
    /// Credits actually added or taken (a positive number). A revocation
    /// takes at most the balance, so this is below `requested` when the
    /// balance was lower; 0 means nothing changed and nothing was recorded.
    pub applied: i64,
    /// The org's balance afterwards.
    pub balance: i64,
    /// The ledger entry recording the change (`GRANT` or `REVOKE`); null when nothing changed.
    pub ledger_entry: Option<LedgerEntry>,
}

impl CreditAdjustment {
    /// The answer for `done`, asked for `requested` credits of `org_id`.
    pub fn new(org_id: Uuid, requested: i64, done: Adjustment) -> Self {
        Self {
            org_id,
            requested,
            applied: done.applied,
            balance: done.balance,
            ledger_entry: done.entry.map(LedgerEntry::from),
        }
    }
}
