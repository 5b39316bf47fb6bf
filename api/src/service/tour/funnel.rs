//! Per-flow funnels: how many runs started, completed, were dismissed or
//! hit a missing element, and for each step how many runs reached it, could
//! not find its element, or ended there.
//!
//! Two aggregate queries over the content's runs, whatever their number:
//! one row of sums (a `CASE` on a bit of the step masks per step; bitwise
//! `&` reads the same on SQLite and PostgreSQL), and one count of dismissals
//! grouped by step.

use entity::tour_run;
use sea_orm::{
    ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect, QueryTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    auth::OrgScope,
    domain::{TourRunStatus, TourTrigger},
    error::AppError,
    service::{content, scoped},
    state::State,
};

/// One step's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunnelStep {
    /// The step (from 0).
    pub step: i32,
    /// Runs that showed it.
    pub reached: u64,
    /// Runs that could not find its element.
    pub target_missing: u64,
    /// Runs dismissed at it.
    pub dismissed: u64,
}

/// A content's funnel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Funnel {
    pub content_id: Uuid,
    pub started: u64,
    pub auto_started: u64,
    pub completed: u64,
    pub dismissed: u64,
    /// Runs with at least one missing element.
    pub target_missing: u64,
    /// `completed / started` (0 with no runs).
    pub completion_rate: f64,
    pub steps: Vec<FunnelStep>,
}

fn count(row: &sea_orm::QueryResult, col: &str) -> Result<u64, AppError> {
    let v: Option<i64> = row.try_get("", col)?;
    Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
}

/// The funnel of the caller's flow or tooltip `content_id` (all zeros with no runs).
pub async fn funnel(st: &State, scope: &OrgScope, content_id: Uuid) -> Result<Funnel, AppError> {
    let of_content =
        || scoped::<tour_run::Entity>(scope).filter(tour_run::Column::ContentId.eq(content_id));
    let backend = st.db.get_database_backend();
    let steps_total: Option<i32> = of_content()
        .select_only()
        .expr(Expr::cust("MAX(steps_total)"))
        .into_tuple()
        .one(&st.db)
        .await?
        .flatten();
    let steps = usize::try_from(steps_total.unwrap_or(0))
        .unwrap_or(0)
        .min(content::MAX_STEPS);
    let sum = |cond: String| Expr::cust(format!("SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)"));
    let mut q = of_content()
        .select_only()
        .expr_as(Expr::cust("COUNT(*)"), "started")
        .expr_as(
            sum(format!("trigger = '{}'", TourTrigger::Auto.as_str())),
            "auto_started",
        )
        .expr_as(
            sum(format!("status = '{}'", TourRunStatus::Completed.as_str())),
            "completed",
        )
        .expr_as(
            sum(format!("status = '{}'", TourRunStatus::Dismissed.as_str())),
            "dismissed",
        )
        .expr_as(sum("target_missing > 0".into()), "target_missing");
    for i in 0..steps {
        let bit = 1i64 << i;
        q = q
            .expr_as(sum(format!("(seen_mask & {bit}) <> 0")), format!("r{i}"))
            .expr_as(sum(format!("(missing_mask & {bit}) <> 0")), format!("m{i}"));
    }
    let Some(row) = st.db.query_one_raw(q.build(backend)).await? else {
        return Ok(Funnel {
            content_id,
            ..Default::default()
        });
    };
    let dismissals: Vec<(Option<i32>, i64)> = of_content()
        .select_only()
        .column(tour_run::Column::DismissedAtStep)
        .expr(Expr::cust("COUNT(*)"))
        .filter(tour_run::Column::Status.eq(TourRunStatus::Dismissed.as_str()))
        .group_by(tour_run::Column::DismissedAtStep)
        .into_tuple()
        .all(&st.db)
        .await?;
    let mut out = Funnel {
        content_id,
        started: count(&row, "started")?,
        auto_started: count(&row, "auto_started")?,
        completed: count(&row, "completed")?,
        dismissed: count(&row, "dismissed")?,
        target_missing: count(&row, "target_missing")?,
        ..Default::default()
    };
    out.completion_rate = if out.started == 0 {
        0.0
    } else {
        out.completed as f64 / out.started as f64
    };
    for i in 0..steps {
        let step = i32::try_from(i).unwrap_or(0);
        out.steps.push(FunnelStep {
            step,
            reached: count(&row, &format!("r{i}"))?,
            target_missing: count(&row, &format!("m{i}"))?,
            dismissed: dismissals
                .iter()
                .filter(|(s, _)| *s == Some(step))
                .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
                .sum(),
        });
    }
    Ok(out)
}
