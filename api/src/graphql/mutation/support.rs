//! Support: the public `submitFeedback`, `requestHandoff` and `submitContact`
//! that land votes, hand-offs and contact requests (as tickets), and
//! `updateTicket` for the support inbox.

use async_graphql::{Context, Object};

use crate::{
    error::GqlResult,
    graphql::{
        ContextExt,
        types::{RequestHandoffResult, SubmitFeedbackResult, SupportTicket},
    },
    service::{
        contact::{self, ContactOutcome, ContactSubmission},
        feedback::{self, SubmitFeedbackInput},
        handoff::{self, RequestHandoffInput},
        ticket::{self, UpdateTicketInput},
    },
};

#[derive(Default)]
pub struct SupportMutation;

#[Object]
impl SupportMutation {
    /// Public: an up or down vote on a bot reply, with the session's token (or an API key of the org). Voting again on the same message replaces the vote. A `DOWN` vote with `openTicket: true` opens a `FEEDBACK` support ticket on the conversation.
    async fn submit_feedback(
        &self,
        ctx: &Context<'_>,
        input: SubmitFeedbackInput,
    ) -> GqlResult<SubmitFeedbackResult> {
        let st = ctx.state()?;
        let outcome = feedback::submit(st, &ctx.caller(), input).await?;
        Ok(SubmitFeedbackResult {
            ok: true,
            feedback_id: outcome.feedback.id,
            ticket_id: outcome.ticket_id,
        })
    }

    /// Public: the visitor asks for a person. Opens a `HANDOFF` support ticket on the conversation (one per session while it is not closed) and answers with the bot's hand-off message, also sent as a `HANDOFF` turn event to the session's subscribers.
    async fn request_handoff(
        &self,
        ctx: &Context<'_>,
        input: RequestHandoffInput,
    ) -> GqlResult<RequestHandoffResult> {
        let st = ctx.state()?;
        let outcome = handoff::request(st, &ctx.caller(), input).await?;
        Ok(RequestHandoffResult {
            ok: true,
            message: outcome.message,
            ticket_id: outcome.ticket_id,
            turn_id: outcome.turn_id,
        })
    }

    /// Public: the `widget.js` contact form. Needs a fresh `contactChallenge` from `widgetConfig` (each works once, no sooner than `contactMinFillMs` after it was issued and for up to an hour). Opens a `CONTACT_FORM` support ticket and emits `ticket.created_via_widget`.
    async fn submit_contact(
        &self,
        ctx: &Context<'_>,
        input: ContactSubmission,
    ) -> GqlResult<ContactOutcome> {
        let st = ctx.state()?;
        crate::http::origin::check_widget_id(ctx, Some(input.widget_id)).await?;
        Ok(contact::submit_contact(st, input).await?)
    }

    /// Changes a support ticket's status or internal note; emits `ticket.updated`.
    async fn update_ticket(
        &self,
        ctx: &Context<'_>,
        input: UpdateTicketInput,
    ) -> GqlResult<SupportTicket> {
        let (st, scope) = (ctx.state()?, ctx.scope()?);
        Ok(ticket::update(st, &scope, input).await?.try_into()?)
    }
}
