//! The questions the knowledge base could not answer: what to write next.
//!
//! A question counts when its turn ended in the fallback (no article found,
//! AI off or unavailable) or its answer got a downvote. The most recent
//! [`MAX_QUESTIONS`] such questions of the period are grouped by meaning:
//! with an embedding model, a question joins the first group whose first
//! question is within [`SAME_MEANING`] cosine of it; without one, the first
//! group sharing at least half of its stemmed words. Groups come biggest
//! first, each with its count, an example, a few more wordings, when it was
//! last asked and why the questions count.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use entity::{chat_feedback, chat_message};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::{
    auth::OrgScope, domain::TurnStatus, embeddings::Embedder, error::AppError, state::State,
    turn::retrieval::analyze,
};

/// Most questions grouped per call (the most recent ones).
pub const MAX_QUESTIONS: usize = 300;

/// Most days looked back.
pub const MAX_DAYS: i64 = 365;

/// Cosine above which two questions mean the same.
const SAME_MEANING: f32 = 0.72;

/// Share of shared stemmed words (Jaccard) above which two questions are alike without a model.
const SAME_WORDS: f64 = 0.5;

/// Wordings kept per group besides the example.
const MORE_WORDINGS: usize = 4;

/// One group of like questions.
#[derive(Clone, Debug, PartialEq)]
pub struct UnansweredGroup {
    /// Questions in the group.
    pub count: usize,
    /// Its most recent question.
    pub example: String,
    /// Other wordings, most recent first, at most [`MORE_WORDINGS`].
    pub others: Vec<String>,
    pub last_asked_at: DateTime<Utc>,
    /// Why its questions count: fallback reasons (`no_articles`, …) and `downvoted`.
    pub reasons: Vec<String>,
}

/// One question that went unanswered.
struct Asked {
    turn_id: Uuid,
    text: String,
    at: DateTime<Utc>,
    reason: String,
}

/// The caller's unanswered questions of the last `days`, grouped, biggest first, at most `first` groups.
pub async fn groups(
    st: &State,
    scope: &OrgScope,
    days: i64,
    first: usize,
) -> Result<Vec<UnansweredGroup>, AppError> {
    let since = Utc::now() - Duration::days(days.clamp(1, MAX_DAYS));
    let org = scope.org_id();
    use chat_message::{Column as M, Entity as Messages};
    // Turns that ended in the fallback.
    let fallbacks: Vec<(Uuid, serde_json::Value)> = Messages::find()
        .filter(M::OrgId.eq(org))
        .filter(M::Role.eq("bot"))
        .filter(M::Status.eq(TurnStatus::Fallback.as_str()))
        .filter(M::CreatedAt.gte(since))
        .order_by_desc(M::CreatedAt)
        .limit(MAX_QUESTIONS as u64)
        .select_only()
        .column(M::TurnId)
        .column(M::Payload)
        .into_tuple()
        .all(&st.db)
        .await?;
    let mut reason: HashMap<Uuid, String> = fallbacks
        .into_iter()
        .map(|(turn, payload)| {
            let why = payload
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("fallback")
                .to_string();
            (turn, why)
        })
        .collect();
    // Answers voted down.
    let down: Vec<Uuid> = chat_feedback::Entity::find()
        .filter(chat_feedback::Column::OrgId.eq(org))
        .filter(chat_feedback::Column::Vote.eq("DOWN"))
        .filter(chat_feedback::Column::CreatedAt.gte(since))
        .order_by_desc(chat_feedback::Column::CreatedAt)
        .limit(MAX_QUESTIONS as u64)
        .select_only()
        .column(chat_feedback::Column::MessageId)
        .into_tuple()
        .all(&st.db)
        .await?;
    if !down.is_empty() {
        let turns: Vec<Uuid> = Messages::find()
            .filter(M::OrgId.eq(org))
            .filter(M::Id.is_in(down))
            .select_only()
            .column(M::TurnId)
            .into_tuple()
            .all(&st.db)
            .await?;
        for t in turns {
            reason.entry(t).or_insert_with(|| "downvoted".into());
        }
    }
    if reason.is_empty() {
        return Ok(vec![]);
    }
    let turn_ids: Vec<Uuid> = reason.keys().copied().collect();
    let mut asked: Vec<Asked> = Vec::new();
    for chunk in turn_ids.chunks(500) {
        let rows: Vec<(Uuid, String, DateTime<Utc>)> = Messages::find()
            .filter(M::OrgId.eq(org))
            .filter(M::Role.eq("user"))
            .filter(M::TurnId.is_in(chunk.iter().copied()))
            .select_only()
            .column(M::TurnId)
            .column(M::Text)
            .column(M::CreatedAt)
            .into_tuple()
            .all(&st.db)
            .await?;
        asked.extend(rows.into_iter().map(|(turn_id, text, at)| Asked {
            reason: reason.get(&turn_id).cloned().unwrap_or_default(),
            turn_id,
            text,
            at,
        }));
    }
    asked.sort_by(|a, b| b.at.cmp(&a.at).then(a.turn_id.cmp(&b.turn_id)));
    asked.truncate(MAX_QUESTIONS);
    let assignment = match &st.retriever.embedder {
        Some(e) => match by_meaning(e.as_ref(), &asked).await {
            Ok(a) => a,
            Err(err) => {
                tracing::warn!(%err, "grouping unanswered questions by words: the embedder failed");
                by_words(&asked)
            }
        },
        None => by_words(&asked),
    };
    let mut groups: Vec<UnansweredGroup> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for (q, g) in asked.iter().zip(assignment) {
        let i = *index.entry(g).or_insert_with(|| {
            groups.push(UnansweredGroup {
                count: 0,
                example: q.text.clone(),
                others: vec![],
                last_asked_at: q.at,
                reasons: vec![],
            });
            groups.len() - 1
        });
        let group = &mut groups[i];
        group.count += 1;
        if group.count > 1
            && group.others.len() < MORE_WORDINGS
            && !group.others.contains(&q.text)
            && group.example != q.text
        {
            group.others.push(q.text.clone());
        }
        if !group.reasons.contains(&q.reason) {
            group.reasons.push(q.reason.clone());
        }
    }
    // Stable: equal counts stay most recent first.
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    groups.truncate(first);
    Ok(groups)
}

/// Group number per question, by embedding cosine with each group's first question.
async fn by_meaning(
    embedder: &dyn Embedder,
    asked: &[Asked],
) -> Result<Vec<usize>, crate::embeddings::EmbedError> {
    let mut vectors = Vec::with_capacity(asked.len());
    for chunk in asked.chunks(crate::embeddings::MAX_BATCH) {
        let texts: Vec<String> = chunk.iter().map(|a| a.text.clone()).collect();
        vectors.extend(embedder.embed(&texts).await?);
    }
    Ok(leader_groups(vectors.len(), |leader, i| {
        let cos: f32 = vectors[leader]
            .iter()
            .zip(&vectors[i])
            .map(|(a, b)| a * b)
            .sum();
        cos >= SAME_MEANING
    }))
}

/// Group number per question, by shared stemmed words with each group's first question.
fn by_words(asked: &[Asked]) -> Vec<usize> {
    let stemmer = analyze::stemmer();
    let sets: Vec<HashSet<String>> = asked
        .iter()
        .map(|a| {
            let mut t = Vec::new();
            analyze::terms_of(&stemmer, &a.text, &mut t);
            t.into_iter().collect()
        })
        .collect();
    leader_groups(sets.len(), |leader, i| {
        let (a, b) = (&sets[leader], &sets[i]);
        let union = a.union(b).count();
        union > 0 && a.intersection(b).count() as f64 / union as f64 >= SAME_WORDS
    })
}

/// Greedy grouping of `n` items in order: each joins the first group whose
/// first item (its leader) it is `alike` to, else starts a group. Returns
/// the group number of each item.
fn leader_groups(n: usize, alike: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut leaders: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let group = match leaders.iter().position(|&l| alike(l, i)) {
            Some(g) => g,
            None => {
                leaders.push(i);
                leaders.len() - 1
            }
        };
        out.push(group);
    }
    out
}
