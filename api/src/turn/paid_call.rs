//! One non-streamed JSON LLM call of a turn (the matcher's, the
//! generator's), paid through credits: reserve an estimate before calling,
//! settle by the tokens the provider reported, refund on anything else
//! ([`crate::service::credits::ReservationGuard`]). Bounded by the same total
//! deadline as the streamed answer, so a slow provider ends in the turn's
//! fallback path rather than a request timeout.

use std::sync::Arc;

use uuid::Uuid;

use crate::{
    llm::{ChatRequest, LlmProvider, complete},
    service::credits::{self, ReservationGuard, ReserveError},
    state::State,
};

/// What a paid call returned.
#[derive(Debug)]
pub struct Paid {
    pub text: String,
    pub tokens: u32,
}

/// Why a paid call gave nothing usable.
#[derive(Debug)]
pub enum CallError {
    /// Not enough credits: the call was not made.
    Insufficient,
    /// The provider failed, timed out or the reservation failed; logged.
    Failed(String),
}

/// Makes `req` on `provider`, paid by `org_id` for `turn_id`.
pub async fn json_call(
    st: &State,
    org_id: Uuid,
    turn_id: Uuid,
    provider: &Arc<dyn LlmProvider>,
    req: ChatRequest,
) -> Result<Paid, CallError> {
    let prompt_chars: usize =
        req.system.len() + req.messages.iter().map(|m| m.content.len()).sum::<usize>();
    let estimate = (prompt_chars / 3) as u64 + u64::from(req.max_tokens);
    let price = st.config.credit_price(&req.model);
    let reservation = match ReservationGuard::reserve(
        &st.db,
        org_id,
        Some(turn_id),
        &req.model,
        credits::cost(estimate, price),
    )
    .await
    {
        Ok(r) => r,
        Err(ReserveError::Insufficient) => return Err(CallError::Insufficient),
        Err(ReserveError::Failed(err)) => return Err(CallError::Failed(err.to_string())),
    };
    let deadline = crate::llm::total_timeout(&st.config);
    let result = tokio::time::timeout(deadline, complete(provider.as_ref(), req)).await;
    match result {
        Ok(Ok(done)) => {
            let used = done.usage.total();
            reservation
                .settle(credits::cost(u64::from(used), price), used)
                .await;
            Ok(Paid {
                text: done.text,
                tokens: used,
            })
        }
        Ok(Err(err)) => {
            reservation.settle(0, 0).await;
            Err(CallError::Failed(err.to_string()))
        }
        Err(_) => {
            reservation.settle(0, 0).await;
            Err(CallError::Failed("timed out".into()))
        }
    }
}

/// From the first `{` to the last `}` after it: the JSON object a model
/// wrapped in prose or code fences.
pub fn json_object(text: &str) -> Option<serde_json::Value> {
    let start = text.find('{')?;
    let len = text[start..].rfind('}')?;
    serde_json::from_str(text.get(start..=start + len)?).ok()
}
