//! Tour runs and funnels as dashboards read them.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::{TourRunStatus, TourTrigger},
    error::AppError,
    service::tour::{Funnel, FunnelStep},
    turn::events::ContentKind,
};

/// One run of a flow or tooltip in one visitor's browser, as the walkthrough runtime reported it.
#[derive(SimpleObject, Clone)]
pub struct TourRun {
    /// Run id.
    pub id: Uuid,
    /// The flow or tooltip.
    pub content_id: Uuid,
    /// Flow or tooltip.
    pub content_kind: ContentKind,
    /// The chat widget it ran under.
    pub chat_widget_id: Option<Uuid>,
    /// The visitor's session.
    pub session_id: Uuid,
    /// The visitor (see `endUsers`).
    pub end_user_id: Option<Uuid>,
    /// What started it.
    pub trigger: TourTrigger,
    /// Running, completed or dismissed.
    pub status: TourRunStatus,
    /// Steps the content had when the run began.
    pub steps_total: i32,
    /// Steps shown (from 0), in order.
    pub steps_seen: Vec<i32>,
    /// One past the highest step shown (0: none yet).
    pub furthest_step: i32,
    /// Steps whose element could not be found (from 0).
    pub missing_steps: Vec<i32>,
    /// Target-missing reports the run made.
    pub target_missing: i32,
    /// The step it was dismissed at.
    pub dismissed_at_step: Option<i32>,
    /// The locators tried for the last missing element.
    pub last_missing_locators: Vec<String>,
    /// The last page it reported from.
    pub page_url: Option<String>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last reported.
    pub updated_at: DateTime<Utc>,
    /// When it completed or was dismissed.
    pub ended_at: Option<DateTime<Utc>>,
}

fn bits(mask: i64) -> Vec<i32> {
    (0..63).filter(|i| mask & (1i64 << i) != 0).collect()
}

impl TryFrom<entity::tour_run::Model> for TourRun {
    type Error = AppError;
    fn try_from(m: entity::tour_run::Model) -> Result<Self, AppError> {
        let content_kind = match m.content_kind.as_str() {
            "TOOLTIP" => ContentKind::Tooltip,
            "FLOW" => ContentKind::Flow,
            other => {
                return Err(AppError::internal(format!(
                    "unknown content kind {other:?} in the database"
                )));
            }
        };
        let last_missing_locators = m
            .last_missing
            .as_ref()
            .and_then(|v| serde_json::from_value(v["locators"].clone()).ok())
            .unwrap_or_default();
        Ok(Self {
            id: m.id,
            content_id: m.content_id,
            content_kind,
            chat_widget_id: m.chat_widget_id,
            session_id: m.session_id,
            end_user_id: m.end_user_id,
            trigger: TourTrigger::from_stored(&m.trigger)?,
            status: TourRunStatus::from_stored(&m.status)?,
            steps_total: m.steps_total,
            steps_seen: bits(m.seen_mask),
            furthest_step: m.furthest_step,
            missing_steps: bits(m.missing_mask),
            target_missing: m.target_missing,
            dismissed_at_step: m.dismissed_at_step,
            last_missing_locators,
            page_url: m.page_url,
            created_at: m.created_at,
            updated_at: m.updated_at,
            ended_at: m.ended_at,
        })
    }
}

/// How a flow's or tooltip's runs went: starts, completion, drop-off per step, missing elements.
#[derive(SimpleObject, Clone)]
pub struct TourFunnel {
    /// The flow or tooltip.
    pub content_id: Uuid,
    /// Runs started (every run counts, however it ended).
    pub started: i64,
    /// Of those, runs the server started by itself (`autoStart`).
    pub auto_started: i64,
    /// Runs finished at the last step.
    pub completed: i64,
    /// Runs closed before the end.
    pub dismissed: i64,
    /// Runs in which at least one element could not be found on the visitor's page.
    pub target_missing: i64,
    /// `completed / started` (0 with no runs).
    pub completion_rate: f64,
    /// Per step, in order.
    pub steps: Vec<TourFunnelStep>,
}

/// One step of a funnel.
#[derive(SimpleObject, Clone)]
pub struct TourFunnelStep {
    /// The step (from 0).
    pub step: i32,
    /// Runs that showed it.
    pub reached: i64,
    /// Runs that could not find its element.
    pub target_missing: i64,
    /// Runs dismissed at it.
    pub dismissed: i64,
}

fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl From<FunnelStep> for TourFunnelStep {
    fn from(s: FunnelStep) -> Self {
        Self {
            step: s.step,
            reached: n(s.reached),
            target_missing: n(s.target_missing),
            dismissed: n(s.dismissed),
        }
    }
}

impl From<Funnel> for TourFunnel {
    fn from(f: Funnel) -> Self {
        Self {
            content_id: f.content_id,
            started: n(f.started),
            auto_started: n(f.auto_started),
            completed: n(f.completed),
            dismissed: n(f.dismissed),
            target_missing: n(f.target_missing),
            completion_rate: f.completion_rate,
            steps: f.steps.into_iter().map(Into::into).collect(),
        }
    }
}
