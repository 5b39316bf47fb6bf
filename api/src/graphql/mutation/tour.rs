//! The walkthrough runtime's public calls: `visitPage` (what to start by
//! itself on this page) and `reportTourRun` (how a run went).

use async_graphql::{Context, InputObject, Json, Object, SimpleObject};
use uuid::Uuid;

use crate::{
    auth::Caller,
    domain::TourEventKind,
    error::GqlResult,
    graphql::ContextExt,
    service::{
        identity::IdentityClaim,
        tour::{self, PageVisit, TourEvent, TourReport},
    },
    turn::events::TurnContent,
};

/// A page view of `tour.js`. The identity fields are those of `TurnInput`.
#[derive(InputObject)]
pub struct VisitPageInput {
    /// The public widget id.
    pub widget_id: Uuid,
    /// The visitor's session token, if they have one (the chat's, or one an earlier call gave).
    #[graphql(secret)]
    pub session_token: Option<String>,
    /// The page the visitor is on (absolute URL).
    pub page_url: String,
    /// The host app's id of a signed-in visitor, with `userHash` (as in `TurnInput`).
    pub user_id: Option<String>,
    /// `hex(HMAC-SHA256(identitySecret, userId))` (as in `TurnInput`).
    #[graphql(secret)]
    pub user_hash: Option<String>,
    /// The signed-in visitor's traits (as in `TurnInput`): what audience rules are evaluated against.
    pub traits: Option<Json<serde_json::Value>>,
}

/// What a page should do.
#[derive(SimpleObject)]
pub struct VisitPageResult {
    /// The visitor's session, when they have one (or one was made to record an auto-start).
    pub session_id: Option<Uuid>,
    /// Its token: keep it and send it with later calls.
    pub session_token: Option<String>,
    /// The flow or tooltip to start now, if one auto-starts here for this visitor.
    pub content: Option<TurnContent>,
    /// The run key to report that run under (`reportTourRun`).
    pub run: Option<String>,
}

/// One thing the runtime saw: the `detail` of its DOM event, with the event's name and the run.
#[derive(InputObject)]
pub struct TourEventInput {
    /// The runtime's id of the run: 1 to 64 letters, digits, `-` or `_`, unique per session.
    pub run: String,
    /// What happened, as the DOM event is named after `wayfinder:flow-`: `started`, `step`, `completed`, `dismissed` or `target-missing`.
    #[graphql(name = "type")]
    pub kind: String,
    /// The flow's or tooltip's id. Events about content this visitor may not run (or without an id) are ignored.
    pub id: Option<async_graphql::ID>,
    /// The step (from 0; at most 49).
    pub step: i32,
    /// How many steps the page's copy of the content has (informational: the server counts the stored content's).
    pub of: Option<i32>,
    /// For `target-missing`: every locator tried (at most 8 kept, 300 characters each).
    pub locators: Option<Vec<crate::appmap::Locator>>,
}

/// The event kind a DOM event name stands for.
fn event_kind(i: usize, name: &str) -> Result<TourEventKind, crate::error::AppError> {
    Ok(match name {
        "started" => TourEventKind::Started,
        "step" => TourEventKind::Step,
        "completed" => TourEventKind::Completed,
        "dismissed" => TourEventKind::Dismissed,
        "target-missing" => TourEventKind::TargetMissing,
        _ => {
            return Err(crate::error::AppError::bad_input(
                format!("input.events[{i}].type"),
                "one of started, step, completed, dismissed, target-missing",
            ));
        }
    })
}

/// A batch of runtime events from one page (at most 50; more is `BAD_USER_INPUT`, checked before anything else).
#[derive(InputObject)]
pub struct ReportTourRunInput {
    /// The public widget id.
    pub widget_id: Uuid,
    /// The visitor's session token; without one (or with one that no longer opens its session) a session is made.
    #[graphql(secret)]
    pub session_token: Option<String>,
    /// The page the events happened on (absolute URL).
    pub page_url: Option<String>,
    /// The host app's id of a signed-in visitor, with `userHash` (as in `TurnInput`).
    pub user_id: Option<String>,
    /// `hex(HMAC-SHA256(identitySecret, userId))` (as in `TurnInput`).
    #[graphql(secret)]
    pub user_hash: Option<String>,
    /// The signed-in visitor's traits (as in `TurnInput`).
    pub traits: Option<Json<serde_json::Value>>,
    /// The events, in the order they happened.
    pub events: Vec<TourEventInput>,
}

/// What a report stored.
#[derive(SimpleObject)]
pub struct ReportTourRunResult {
    /// Events stored.
    pub accepted: i32,
    /// Events ignored: about content this visitor may not run, or steps it does not have.
    pub ignored: i32,
    /// The session the runs are stored under.
    pub session_id: Uuid,
    /// Its token: keep it and send it with later calls.
    pub session_token: String,
}

fn claim(
    user_id: Option<String>,
    user_hash: Option<String>,
    traits: Option<Json<serde_json::Value>>,
) -> IdentityClaim {
    IdentityClaim {
        user_id,
        user_hash,
        traits: traits.map(|t| t.0),
    }
}

fn is_public(ctx: &Context<'_>) -> bool {
    matches!(ctx.caller(), Caller::Public { .. })
}

#[derive(Default)]
pub struct TourMutation;

#[Object]
impl TourMutation {
    /// Public (`tour.js`, on every page load): which flow or tooltip starts by itself on this page for this visitor, if any. Content starts by itself when it is published with an `autoStart` pattern the page URL matches and an audience of `ALL`, or `RULES` that hold for the visitor (evaluated here, on the signed identity's traits and the page URL: neither reaches the page); at most once per visitor, recorded as a run. `NO_USERS` content never starts by itself.
    async fn visit_page(
        &self,
        ctx: &Context<'_>,
        input: VisitPageInput,
    ) -> GqlResult<VisitPageResult> {
        let st = ctx.state()?;
        crate::http::origin::check_widget_id(ctx, Some(input.widget_id)).await?;
        let visited = tour::visit(
            st,
            PageVisit {
                widget_id: input.widget_id,
                session_token: input.session_token,
                page_url: input.page_url,
                identity: claim(input.user_id, input.user_hash, input.traits),
                public: is_public(ctx),
            },
        )
        .await?;
        let (session_id, session_token) = visited.session.unzip();
        Ok(VisitPageResult {
            session_id,
            session_token,
            content: visited.content,
            run: visited.run_key,
        })
    }

    /// Public (`tour.js`): stores how tour runs went: started, each step seen, completed, dismissed (at which step), target missing (which step, which locators). At most 50 events per call; events about content this visitor may not run (another visitor's generated flow, a draft, another org's) are ignored, never stored.
    async fn report_tour_run(
        &self,
        ctx: &Context<'_>,
        input: ReportTourRunInput,
    ) -> GqlResult<ReportTourRunResult> {
        let st = ctx.state()?;
        crate::http::origin::check_widget_id(ctx, Some(input.widget_id)).await?;
        let reported = tour::report(
            st,
            TourReport {
                widget_id: input.widget_id,
                session_token: input.session_token,
                page_url: input.page_url,
                identity: claim(input.user_id, input.user_hash, input.traits),
                events: input
                    .events
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| {
                        Ok(TourEvent {
                            kind: event_kind(i, &e.kind)?,
                            run: e.run,
                            content_id: e.id.map(|id| id.0).unwrap_or_default(),
                            step: e.step,
                            locators: e
                                .locators
                                .unwrap_or_default()
                                .into_iter()
                                .map(|l| l.value)
                                .collect(),
                        })
                    })
                    .collect::<Result<_, crate::error::AppError>>()?,
                public: is_public(ctx),
            },
        )
        .await?;
        Ok(ReportTourRunResult {
            accepted: i32::try_from(reported.accepted).unwrap_or(i32::MAX),
            ignored: i32::try_from(reported.ignored).unwrap_or(i32::MAX),
            session_id: reported.session_id,
            session_token: reported.session_token,
        })
    }
}
