//! `reportTourRun`: what the walkthrough runtime saw, stored per run.
//!
//! `tour.js` sends its events in small batches (one run's, usually), each
//! naming the run by the key it chose and the content by id. A run's row is
//! made on its first event and updated with atomic column expressions (bit
//! masks or-ed in, counters added, the status moved on only from
//! `STARTED`, in an update filtered on it), so batches that arrive together or twice never lose or
//! double what they say, on SQLite and PostgreSQL alike.
//!
//! Events about content this visitor may not run (another visitor's
//! generated flow, a draft, another org's, an unknown id) are ignored and
//! counted as such: nothing is stored about them.

use std::collections::HashMap;

use chrono::Utc;
use entity::{chat_session, tour_run};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use uuid::Uuid;

use super::{NewRun, kind_name, new_run, visitor_session};
use crate::{
    domain::{self, TourEventKind, TourRunStatus, TourTrigger},
    error::AppError,
    service::{chat, chat_widget, content, identity},
    state::State,
    turn::events::ContentKind,
};

/// Most events one report carries.
pub const MAX_EVENTS: usize = 50;
/// Longest run key.
const RUN_KEY_MAX: usize = 64;
/// Most locators kept with a missing target, and the longest of each.
const LOCATORS_MAX: usize = 8;
const LOCATOR_MAX: usize = 300;

/// One thing the runtime saw.
#[derive(Debug, Clone)]
pub struct TourEvent {
    /// The runtime's id of the run.
    pub run: String,
    /// The flow's or tooltip's id, as the page had it (not always a UUID: a
    /// host page may run content of its own, which is ignored; empty: none).
    pub content_id: String,
    pub kind: TourEventKind,
    /// The step (from 0).
    pub step: i32,
    /// For `TARGET_MISSING`: every way the element was looked for.
    pub locators: Vec<String>,
}

/// A batch of events from one page.
#[derive(Debug, Clone)]
pub struct TourReport {
    pub widget_id: Uuid,
    pub session_token: Option<String>,
    pub page_url: Option<String>,
    pub identity: identity::IdentityClaim,
    pub events: Vec<TourEvent>,
    /// Whether the caller is public (charged to the widget's budget).
    pub public: bool,
}

/// What a report did.
#[derive(Debug, Clone)]
pub struct Reported {
    /// Events stored.
    pub accepted: usize,
    /// Events about content this visitor may not run, or steps it does not have.
    pub ignored: usize,
    /// The session the runs were stored under, and a token for it.
    pub session_id: Uuid,
    pub session_token: String,
}

fn run_key(field: &str, key: &str) -> Result<String, AppError> {
    let ok = !key.is_empty()
        && key.len() <= RUN_KEY_MAX
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(AppError::bad_input(
            field,
            format!("1 to {RUN_KEY_MAX} letters, digits, - or _"),
        ));
    }
    Ok(key.to_string())
}

/// What one batch says about one run.
#[derive(Default)]
struct RunDelta {
    content_id: Option<Uuid>,
    seen: i64,
    furthest: i32,
    missing: i64,
    missing_count: i32,
    last_missing: Option<serde_json::Value>,
    /// The first terminal event of the batch.
    end: Option<(TourRunStatus, Option<i32>)>,
    events: usize,
}

/// Stores a batch of runtime events (see the module docs).
#[tracing::instrument(skip_all, fields(widget_id = %r.widget_id, events = r.events.len()))]
pub async fn report(st: &State, r: TourReport) -> Result<Reported, AppError> {
    if r.events.len() > MAX_EVENTS {
        return Err(AppError::bad_input(
            "input.events",
            format!("at most {MAX_EVENTS} events per report"),
        ));
    }
    let page_url = r
        .page_url
        .as_deref()
        .map(|u| domain::http_url("input.pageUrl", u))
        .transpose()?;
    let mut runs: Vec<(String, RunDelta)> = vec![];
    for (i, e) in r.events.iter().enumerate() {
        let key = run_key(&format!("input.events[{i}].run"), &e.run)?;
        if e.step < 0 || e.step >= content::MAX_STEPS as i32 {
            return Err(AppError::bad_input(
                format!("input.events[{i}].step"),
                format!("0 to {}", content::MAX_STEPS - 1),
            ));
        }
        if !runs.iter().any(|(k, _)| *k == key) {
            runs.push((key, RunDelta::default()));
        }
    }
    let (widget, bot) = chat_widget::public(st, r.widget_id)
        .await
        .map_err(|_| AppError::not_found_in("chat widget", "input.widgetId"))?;
    if r.public {
        chat_widget::charge(st, widget.id).await?;
    }
    let session = match visitor_session(st, &widget, &bot, r.session_token.as_deref(), &r.identity)
        .await?
        .0
    {
        Some(s) => s,
        None => chat::start_session(&st.db, bot.org_id, bot.id, Some(&widget)).await?,
    };

    // What each piece of content is and how many steps it has, looked up once.
    let mut contents: HashMap<Uuid, Option<(ContentKind, usize)>> = HashMap::new();
    let mut ignored = 0;
    for e in &r.events {
        let Some((_, delta)) = runs.iter_mut().find(|(k, _)| *k == e.run) else {
            continue;
        };
        let Ok(id) = Uuid::parse_str(&e.content_id) else {
            ignored += 1;
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = contents.entry(id) {
            let known = content::visible_to_session(st, &session, id)
                .await
                .ok()
                .map(|c| (c.kind, c.steps.len()));
            slot.insert(known);
        }
        let Some(Some((_, steps))) = contents.get(&id) else {
            ignored += 1;
            continue;
        };
        if delta.content_id.is_some_and(|c| c != id) || e.step as usize >= (*steps).max(1) {
            ignored += 1;
            continue;
        }
        delta.content_id = Some(id);
        delta.events += 1;
        let bit = 1i64 << e.step;
        match e.kind {
            TourEventKind::Started => {}
            TourEventKind::Step => {
                delta.seen |= bit;
                delta.furthest = delta.furthest.max(e.step + 1);
            }
            TourEventKind::TargetMissing => {
                delta.missing |= bit;
                delta.missing_count += 1;
                let locators: Vec<String> = e
                    .locators
                    .iter()
                    .take(LOCATORS_MAX)
                    .map(|l| l.chars().take(LOCATOR_MAX).collect())
                    .collect();
                delta.last_missing = Some(json!({ "step": e.step, "locators": locators }));
            }
            TourEventKind::Completed => {
                delta.end.get_or_insert((TourRunStatus::Completed, None));
            }
            TourEventKind::Dismissed => {
                delta
                    .end
                    .get_or_insert((TourRunStatus::Dismissed, Some(e.step)));
            }
        }
    }

    let mut accepted = 0;
    let mut flagged = vec![];
    let txn = crate::service::begin_write(&st.db).await?;
    for (key, delta) in runs {
        let Some(content_id) = delta.content_id else {
            continue;
        };
        let Some(Some((kind, steps))) = contents.get(&content_id) else {
            continue;
        };
        let existing = tour_run::Entity::find()
            .filter(tour_run::Column::SessionId.eq(session.id))
            .filter(tour_run::Column::RunKey.eq(key.as_str()))
            .one(&txn)
            .await?;
        match existing {
            Some(run) if run.content_id != content_id => {
                ignored += delta.events;
                continue;
            }
            Some(_) => {}
            None => create_run(&txn, &session, &key, content_id, *kind, *steps, &page_url).await?,
        }
        accepted += delta.events;
        apply(&txn, session.id, &key, &delta, &page_url).await?;
        if delta.missing != 0
            && let Some(ev) =
                flag_missing(&txn, session.org_id, content_id, *kind, delta.missing).await?
        {
            flagged.push(ev);
        }
    }
    txn.commit().await?;
    super::super::event::publish(st, &flagged).await;
    Ok(Reported {
        accepted,
        ignored,
        session_id: session.id,
        session_token: chat::mint_token(st, &session)?,
    })
}

/// Flags content whose elements visitors' pages did not have, the way a
/// re-mapping flags what the new map lost: the steps join the health's
/// `visitorMissingSteps` (until the next mapping re-checks the content), and
/// when that set grows a `content.broken` event (`source: "visitors"`) says so.
async fn flag_missing(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    content_id: Uuid,
    kind: ContentKind,
    mask: i64,
) -> Result<Option<entity::event::Model>, AppError> {
    use entity::{flow, tooltip};
    let health = match kind {
        ContentKind::Flow => flow::Entity::find_by_id(content_id)
            .one(db)
            .await?
            .map(|f| f.health),
        ContentKind::Tooltip => tooltip::Entity::find_by_id(content_id)
            .one(db)
            .await?
            .map(|t| t.health),
    };
    let Some(health) = health else {
        return Ok(None);
    };
    let mut h = health.unwrap_or_else(|| json!({}));
    let before: Vec<i64> =
        serde_json::from_value(h["visitorMissingSteps"].clone()).unwrap_or_default();
    let mut steps = before.clone();
    steps.extend((0..content::MAX_STEPS as i64).filter(|i| mask & (1 << i) != 0));
    steps.sort_unstable();
    steps.dedup();
    if steps == before {
        return Ok(None);
    }
    h["visitorMissingSteps"] = json!(steps);
    match kind {
        ContentKind::Flow => {
            flow::Entity::update_many()
                .col_expr(flow::Column::Health, Expr::value(h))
                .filter(flow::Column::Id.eq(content_id))
                .exec(db)
                .await?;
        }
        ContentKind::Tooltip => {
            tooltip::Entity::update_many()
                .col_expr(tooltip::Column::Health, Expr::value(h))
                .filter(tooltip::Column::Id.eq(content_id))
                .exec(db)
                .await?;
        }
    }
    let kind = kind_name(kind);
    Ok(Some(
        super::super::event::record(
            db,
            org_id,
            "content.broken",
            json!({ "kind": kind, "id": content_id, "source": "visitors", "visitorMissingSteps": steps }),
        )
        .await?,
    ))
}

/// A new `MANUAL` run (one the visitor, the chat or the SDK started); a
/// concurrent first report of the same run meets it on the unique key.
async fn create_run(
    db: &impl ConnectionTrait,
    session: &chat_session::Model,
    key: &str,
    content_id: Uuid,
    kind: ContentKind,
    steps: usize,
    page_url: &Option<String>,
) -> Result<(), AppError> {
    tour_run::Entity::insert(new_run(
        session,
        NewRun {
            content_id,
            kind,
            key,
            trigger: TourTrigger::Manual,
            steps,
            page_url: page_url.clone(),
            auto_key: None,
        },
    ))
    .on_conflict_do_nothing_on([tour_run::Column::SessionId, tour_run::Column::RunKey])
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Folds `delta` into the stored run with column expressions (no
/// read-modify-write). The numbers are ours (masks and counts computed
/// above), so they go into the SQL as literals: one text for both databases.
async fn apply(
    db: &impl ConnectionTrait,
    session_id: Uuid,
    key: &str,
    delta: &RunDelta,
    page_url: &Option<String>,
) -> Result<(), AppError> {
    let now = Utc::now();
    let this_run = || {
        Condition::all()
            .add(tour_run::Column::SessionId.eq(session_id))
            .add(tour_run::Column::RunKey.eq(key))
    };
    let mut update = tour_run::Entity::update_many()
        .col_expr(
            tour_run::Column::SeenMask,
            Expr::cust(format!("seen_mask | {}", delta.seen)),
        )
        .col_expr(
            tour_run::Column::MissingMask,
            Expr::cust(format!("missing_mask | {}", delta.missing)),
        )
        .col_expr(
            tour_run::Column::FurthestStep,
            Expr::cust(format!(
                "CASE WHEN furthest_step < {f} THEN {f} ELSE furthest_step END",
                f = delta.furthest
            )),
        )
        .col_expr(
            tour_run::Column::TargetMissing,
            Expr::cust(format!("target_missing + {}", delta.missing_count)),
        )
        .col_expr(tour_run::Column::UpdatedAt, Expr::value(now));
    if let Some(m) = &delta.last_missing {
        update = update.col_expr(tour_run::Column::LastMissing, Expr::value(m.clone()));
    }
    if let Some(u) = page_url {
        update = update.col_expr(tour_run::Column::PageUrl, Expr::value(u.clone()));
    }
    update.filter(this_run()).exec(db).await?;
    // The first end wins: only a run still `STARTED` moves on.
    if let Some((status, at)) = delta.end {
        tour_run::Entity::update_many()
            .col_expr(tour_run::Column::Status, Expr::value(status.as_str()))
            .col_expr(tour_run::Column::DismissedAtStep, Expr::value(at))
            .col_expr(tour_run::Column::EndedAt, Expr::value(now))
            .filter(this_run())
            .filter(tour_run::Column::Status.eq(TourRunStatus::Started.as_str()))
            .exec(db)
            .await?;
    }
    Ok(())
}
