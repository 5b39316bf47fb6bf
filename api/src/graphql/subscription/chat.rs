//! Live turns: `chatTurn` for the widget following one turn, `sessionEvents`
//! for a dashboard watching a conversation.
//!
//! No gap and no duplicate whatever the timing: subscribe to the bus first
//! (and wait, briefly, until the bus delivers that topic from other
//! replicas), then replay the store, then pass live events after the last
//! sequence number seen of their turn. A live event that skips ahead (a lost
//! message), a lagging subscriber and a bus that reconnected (Redis came
//! back: anything published meanwhile is gone) all re-read the store, and an
//! idle stream re-checks it every [`IDLE_RECHECK`], so a subscriber on any
//! replica sees every event once and in order, through a Redis outage too.
//! `sessionEvents` tracks the last sequence number per turn (a session's
//! events are its turns' events), which is its gap detector.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use async_graphql::{Context, Subscription};
use futures_util::stream::{self, BoxStream};
use uuid::Uuid;

use super::live;
use crate::{
    auth::Caller,
    domain::TurnStatus,
    error::{AppError, GqlError},
    graphql::ContextExt,
    pubsub::{Delivery, Subscription},
    service::chat,
    state::AppState,
    turn::events::{TurnEvent, session_topic, stashed_chunks, turn_topic},
};

// Re-reading the store (`fill`) is boxed wherever a stream awaits it: its
// database future is large and rare, and an idle subscription should carry
// only what it needs to wait for the bus.

/// How long a live stream waits before re-checking the store.
const IDLE_RECHECK: Duration = Duration::from_secs(10);
/// The same while the bus is disconnected (Redis down): other replicas'
/// events only reach this one through the store then, so look more often.
const OUTAGE_RECHECK: Duration = Duration::from_millis(500);

/// How long a live stream may wait for the bus before re-reading the store.
pub(crate) fn recheck_after(st: &AppState) -> Duration {
    if st.bus.connected() {
        IDLE_RECHECK
    } else {
        OUTAGE_RECHECK
    }
}
/// The same for long-lived streams (`sessionEvents`, `orgEvents`) while the
/// bus is connected: at least this long, plus up to as much again at random.
/// A reconnect or a lag already reports a gap (and a re-read), so this is
/// only a safety net; with one idle re-read every 10 s per stream, 18,000
/// dashboards' streams opened together made 18,000 queries in one burst
/// every 10 s and stalled every other request for ~0.4 s (`sockets` bench).
const LONG_IDLE_RECHECK: Duration = Duration::from_secs(60);

/// How long a long-lived stream waits for the bus before re-reading the store.
pub(crate) fn long_recheck_after(st: &AppState) -> Duration {
    if !st.bus.connected() {
        return OUTAGE_RECHECK;
    }
    // Spread over [LONG_IDLE_RECHECK, 2 × LONG_IDLE_RECHECK), so streams
    // opened together do not re-read together.
    let span = LONG_IDLE_RECHECK.as_millis() as u64;
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u64;
    LONG_IDLE_RECHECK + Duration::from_millis(jitter)
}
/// A turn subscription gives up after this long without completion.
const TURN_MAX: Duration = Duration::from_secs(600);
/// Events a `sessionEvents` subscription replays (and re-reads on a gap).
const SESSION_REPLAY: u64 = 200;
/// How long a new subscription waits for the bus to deliver its topic from
/// other replicas before it replays the store (Redis confirms a `SUBSCRIBE`
/// in well under a millisecond; a down Redis is not waited for at all).
pub(crate) const BUS_READY_WAIT: Duration = Duration::from_secs(1);
/// Turns whose last sequence number a `sessionEvents` subscription keeps;
/// beyond it the oldest are forgotten (a conversation has far fewer).
const SESSION_TURNS_KEPT: usize = 1_000;

/// May the caller see session `session_id`? Another org's session is `NOT_FOUND`.
async fn authorize(
    st: &AppState,
    caller: &Caller,
    session_id: Uuid,
    token: Option<String>,
) -> Result<(), AppError> {
    let not_found = || AppError::not_found("chat session");
    match caller {
        Caller::Org(scope) => {
            crate::service::get::<entity::chat_session::Entity>(&st.db, scope, session_id)
                .await
                .map_err(|_| not_found())?;
            Ok(())
        }
        Caller::Public { .. } | Caller::Operator(_) => {
            let token = caller
                .session_token_or(token)
                .ok_or(AppError::Unauthenticated(
                    "a sessionToken (or an API key) is needed",
                ))?;
            let session = chat::verify_token(st, &token).await?;
            if session.id != session_id {
                return Err(not_found());
            }
            Ok(())
        }
    }
}

/// May the caller follow the turn whose stored events are `rows`? As
/// [`authorize`] decides for its session: another org's turn, or another
/// session's for a token, is `NOT_FOUND`, and so is a turn with no stored
/// event. `session` is what the caller's token unlocked, read beside the
/// rows (`None` for an API key).
fn authorize_turn(
    caller: &Caller,
    rows: &[entity::chat_message::Model],
    session: Result<Option<entity::chat_session::Model>, AppError>,
) -> Result<(), AppError> {
    let not_found = || AppError::not_found("turn");
    let first = rows.first().ok_or_else(not_found)?;
    if let Caller::Org(scope) = caller {
        return if scope.org_id() == first.org_id {
            Ok(())
        } else {
            Err(not_found())
        };
    }
    match session? {
        Some(session) if session.id == first.session_id => Ok(()),
        Some(_) => Err(not_found()),
        None => Err(AppError::Unauthenticated(
            "a sessionToken (or an API key) is needed",
        )),
    }
}

fn events(rows: Vec<entity::chat_message::Model>) -> VecDeque<TurnEvent> {
    rows.iter()
        .filter_map(|m| TurnEvent::from_stored(m).ok())
        .flatten()
        .collect()
}

struct TurnFollow {
    st: AppState,
    rx: Subscription,
    turn_id: Uuid,
    pending: VecDeque<TurnEvent>,
    /// Live events past a gap, kept until the gap is filled (by the store),
    /// so the chunks after a missed one are not read again.
    ahead: BTreeMap<i32, TurnEvent>,
    /// When the store was last read because of a gap in the chunks.
    filled_at: Option<tokio::time::Instant>,
    last_seq: i32,
    done: bool,
    started: tokio::time::Instant,
}

/// While live chunks wait behind a gap, how often the store (and the stash)
/// is re-read: missed chunks are stashed every `STASH_EVERY` and stored with
/// the answer, so reading for every chunk would only load the database.
const GAP_RECHECK: Duration = Duration::from_millis(250);

impl TurnFollow {
    fn tail(&self) -> i32 {
        self.pending.back().map_or(self.last_seq, |e| e.seq)
    }

    async fn fill(&mut self) {
        self.filled_at = Some(tokio::time::Instant::now());
        // From the start: a coalesced row begins before the chunks it holds.
        match chat::turn_events(&self.st.db, self.turn_id, 0).await {
            Ok(rows) => self.take_stored(rows).await,
            Err(err) => {
                tracing::warn!(%err, "chatTurn could not read the store");
                self.release_ahead();
            }
        }
    }

    /// Queues the turn's stored events that are new, then, while the turn
    /// runs, its chunks not stored yet (they follow the store's last event)
    /// from the bus's stash.
    async fn take_stored(&mut self, rows: Vec<entity::chat_message::Model>) {
        let mut finished = false;
        for ev in events(rows) {
            finished |= ev.status == TurnStatus::Completed;
            if ev.seq > self.tail() {
                self.pending.push_back(ev);
            }
        }
        if !finished {
            let tail = self.tail();
            for ev in stashed_chunks(&self.st, self.turn_id).await {
                if ev.seq > tail {
                    self.ahead.entry(ev.seq).or_insert(ev);
                }
            }
        }
        self.release_ahead();
    }

    /// Moves live events that now follow on without a gap to `pending`.
    fn release_ahead(&mut self) {
        let tail = self.tail();
        self.ahead.retain(|seq, _| *seq > tail);
        loop {
            let next = self.tail() + 1;
            match self.ahead.remove(&next) {
                Some(ev) => self.pending.push_back(ev),
                None => break,
            }
        }
    }

    async fn next(mut self) -> Option<(TurnEvent, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if ev.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = ev.seq;
                self.done = ev.status == TurnStatus::Completed;
                return Some((ev, self));
            }
            if self.done || self.started.elapsed() > TURN_MAX {
                return None;
            }
            let wait = if self.ahead.is_empty() {
                recheck_after(&self.st)
            } else {
                GAP_RECHECK
            };
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Delivery::Message(raw)) => {
                    let Ok(ev) = serde_json::from_str::<TurnEvent>(&raw) else {
                        continue;
                    };
                    if ev.seq <= self.last_seq {
                        continue;
                    }
                    if ev.seq == self.last_seq + 1 {
                        self.pending.push_back(ev);
                        self.release_ahead();
                        continue;
                    }
                    // Past a gap. A stored event means the store holds
                    // everything before it; a chunk may be ahead of the store.
                    let stored = ev.status != TurnStatus::AnswerDelta;
                    self.ahead.insert(ev.seq, ev);
                    let recently = self.filled_at.is_some_and(|at| at.elapsed() < GAP_RECHECK);
                    if stored || !recently {
                        Box::pin(self.fill()).await;
                    }
                }
                Ok(Delivery::Gap) | Err(_) => Box::pin(self.fill()).await,
                Ok(Delivery::Closed) => {
                    Box::pin(self.fill()).await;
                    if self.pending.is_empty() {
                        return None;
                    }
                }
            }
        }
    }
}

struct SessionFollow {
    st: AppState,
    rx: Subscription,
    session_id: Uuid,
    /// Events to deliver, in order.
    pending: VecDeque<TurnEvent>,
    /// The highest sequence number queued per turn: an event at or below it
    /// is a duplicate, one past it the next, further on a gap.
    queued: HashMap<Uuid, i32>,
    /// Turns in the order first seen, to forget the oldest.
    turns: VecDeque<Uuid>,
    /// Live events past a gap, by turn and sequence number, kept until the
    /// store or the stash fills the gap: the chunks after a missed one then
    /// wait for one re-read instead of each making its own.
    ahead: BTreeMap<(Uuid, i32), TurnEvent>,
    /// When the store was last read because of a gap in a turn's chunks.
    filled_at: Option<tokio::time::Instant>,
    /// Since when `ahead` has held something.
    gap_since: Option<tokio::time::Instant>,
}

/// Live events a `sessionEvents` subscription keeps past a gap at most;
/// beyond it the latest are left to the next re-read (they are stored with
/// the answer).
const SESSION_AHEAD_KEPT: usize = 2_048;
/// How long a `sessionEvents` gap may stay open before what waits past it is
/// dropped: a gap that neither the store nor the stash fills in that time
/// belongs to a turn whose worker stopped (its missed chunks were never
/// stored), and re-reading every [`GAP_RECHECK`] for the stream's life would
/// only load the database.
const SESSION_GAP_GIVE_UP: Duration = Duration::from_secs(10);

/// Where an event stands against what a `sessionEvents` subscription queued.
enum Place {
    /// Queued before.
    Seen,
    /// The next of its turn (or, re-read from the store, new).
    Next,
    /// Live, and past something not seen yet.
    Ahead,
}

impl SessionFollow {
    fn place(&self, ev: &TurnEvent, live: bool) -> Place {
        let last = self.queued.get(&ev.turn_id).copied();
        if last.is_some_and(|l| ev.seq <= l) {
            Place::Seen
        } else if live && ev.seq != last.unwrap_or(0) + 1 {
            Place::Ahead
        } else {
            Place::Next
        }
    }

    /// Queues `ev`, which is [`Place::Next`].
    fn queue(&mut self, ev: TurnEvent) {
        if !self.queued.contains_key(&ev.turn_id) {
            self.turns.push_back(ev.turn_id);
            if self.turns.len() > SESSION_TURNS_KEPT
                && let Some(old) = self.turns.pop_front()
            {
                self.queued.remove(&old);
            }
        }
        self.queued.insert(ev.turn_id, ev.seq);
        self.pending.push_back(ev);
    }

    /// Queues `ev` unless it was queued before; false when it skips ahead of
    /// its turn's last queued event (something was missed).
    fn offer(&mut self, ev: TurnEvent, live: bool) -> bool {
        match self.place(&ev, live) {
            Place::Seen => true,
            Place::Next => {
                self.queue(ev);
                true
            }
            Place::Ahead => false,
        }
    }

    /// Moves the live events of `turn` kept past a gap that now follow on
    /// to `pending`, and forgets those queued meanwhile.
    fn release_ahead(&mut self, turn: Uuid) {
        while let Some(&(_, seq)) = self
            .ahead
            .range((turn, i32::MIN)..=(turn, i32::MAX))
            .next()
            .map(|(k, _)| k)
        {
            let last = self.queued.get(&turn).copied().unwrap_or(0);
            if seq > last + 1 {
                break;
            }
            if let Some(ev) = self.ahead.remove(&(turn, seq))
                && seq == last + 1
            {
                self.queue(ev);
            }
        }
        if self.ahead.is_empty() {
            self.gap_since = None;
        }
    }

    /// The turns with live events kept past a gap.
    fn turns_ahead(&self) -> Vec<Uuid> {
        let mut turns: Vec<Uuid> = self.ahead.keys().map(|(turn, _)| *turn).collect();
        turns.dedup();
        turns
    }

    /// Re-reads the session's recent events and queues what is new, with
    /// the stashed chunks of `running` (the turn whose live event skipped
    /// ahead) and of every turn with events kept past a gap after them, then
    /// what was kept.
    async fn fill(&mut self, running: Option<Uuid>) {
        match chat::recent_session_events(&self.st.db, self.session_id, SESSION_REPLAY).await {
            Ok(rows) => {
                for ev in events(rows) {
                    self.offer(ev, false);
                }
            }
            Err(err) => tracing::warn!(%err, "sessionEvents could not read the store"),
        }
        let mut turns = self.turns_ahead();
        if let Some(turn_id) = running.filter(|t| !turns.contains(t)) {
            turns.push(turn_id);
        }
        if !turns.is_empty() {
            self.filled_at = Some(tokio::time::Instant::now());
        }
        for turn_id in turns {
            // Only chunks that follow on from what is queued: the stash
            // begins right after the turn's last stored event.
            for ev in stashed_chunks(&self.st, turn_id).await {
                if !self.offer(ev, true) {
                    break;
                }
            }
            self.release_ahead(turn_id);
        }
    }

    async fn next(mut self) -> Option<(TurnEvent, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((ev, self));
            }
            let wait = if self.ahead.is_empty() {
                long_recheck_after(&self.st)
            } else {
                GAP_RECHECK
            };
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Delivery::Message(raw)) => {
                    let Ok(ev) = serde_json::from_str::<TurnEvent>(&raw) else {
                        continue;
                    };
                    match self.place(&ev, true) {
                        Place::Seen => continue,
                        Place::Next => {
                            let turn_id = ev.turn_id;
                            self.queue(ev);
                            if !self.ahead.is_empty() {
                                self.release_ahead(turn_id);
                            }
                            continue;
                        }
                        Place::Ahead => {}
                    }
                    // Past a gap. A stored event means the store holds all
                    // before it; chunks are re-read at most every GAP_RECHECK.
                    let (turn_id, stored) = (ev.turn_id, ev.status != TurnStatus::AnswerDelta);
                    if self.ahead.len() < SESSION_AHEAD_KEPT {
                        self.gap_since.get_or_insert_with(tokio::time::Instant::now);
                        self.ahead.insert((turn_id, ev.seq), ev);
                    }
                    let recently = self.filled_at.is_some_and(|at| at.elapsed() < GAP_RECHECK);
                    if stored || !recently {
                        Box::pin(self.fill(Some(turn_id))).await;
                    }
                }
                Err(_) if !self.ahead.is_empty() => {
                    if self
                        .gap_since
                        .is_some_and(|since| since.elapsed() > SESSION_GAP_GIVE_UP)
                    {
                        tracing::warn!(
                            session = %self.session_id,
                            events = self.ahead.len(),
                            "sessionEvents: a gap stayed open; the events past it are dropped"
                        );
                        self.ahead.clear();
                        self.gap_since = None;
                    } else {
                        Box::pin(self.fill(None)).await;
                    }
                }
                Ok(Delivery::Gap) | Err(_) => Box::pin(self.fill(None)).await,
                Ok(Delivery::Closed) => return None,
            }
        }
    }
}

#[derive(Default)]
pub struct ChatSubscription;

#[Subscription]
impl ChatSubscription {
    /// Public: the events of one turn — first every stored one, then live ones — ending after `COMPLETED`. Needs the session's token (argument, or `sessionToken` in `connection_init`) or an API key of the org.
    async fn chat_turn(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The turn, from `startTurn`.")] turn_id: Uuid,
        #[graphql(desc = "The session token from `startTurn` or `sendMessage`.")]
        session_token: Option<String>,
    ) -> Result<BoxStream<'static, TurnEvent>, GqlError> {
        if let Some(event) = live::delivered(ctx) {
            return Ok(event);
        }
        let (st, caller, handing) = (ctx.state()?.clone(), ctx.caller(), live::Handing::of(ctx));
        // Boxed: async-graphql keeps this future's space in the
        // subscription's stream for as long as it runs.
        Box::pin(async move {
            // The replay's rows say whose turn it is, so the turn and the
            // caller's session are read at once, not one after the other;
            // nothing reaches the caller before `authorize_turn` passes.
            let mut rx = st.bus.subscribe(&turn_topic(turn_id));
            rx.ready(BUS_READY_WAIT).await;
            // An API key needs no token: a stray one is not read.
            let token = match &caller {
                Caller::Org(_) => None,
                _ => caller.session_token_or(session_token),
            };
            let session = async {
                match &token {
                    Some(token) => chat::verify_token(&st, token).await.map(Some),
                    None => Ok(None),
                }
            };
            // The replay: the store, then a running answer's stashed chunks.
            let (stored, session) = tokio::join!(chat::turn_events(&st.db, turn_id, 0), session);
            let stored = stored?;
            authorize_turn(&caller, &stored, session)?;
            let mut follow = TurnFollow {
                st,
                rx,
                turn_id,
                pending: VecDeque::new(),
                ahead: BTreeMap::new(),
                filled_at: None,
                last_seq: 0,
                done: false,
                started: tokio::time::Instant::now(),
            };
            follow.take_stored(stored).await;
            Ok::<_, GqlError>(handing.pass(stream::unfold(follow, TurnFollow::next)))
        })
        .await
    }

    /// Every event of a conversation: the last 200 stored ones, then live ones, for dashboards (API key) or the session's own token.
    async fn session_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session.")] session_id: Uuid,
        #[graphql(desc = "The session's token, when not using an API key.")] session_token: Option<
            String,
        >,
    ) -> Result<BoxStream<'static, TurnEvent>, GqlError> {
        if let Some(event) = live::delivered(ctx) {
            return Ok(event);
        }
        let (st, caller, handing) = (ctx.state()?.clone(), ctx.caller(), live::Handing::of(ctx));
        Box::pin(async move {
            authorize(&st, &caller, session_id, session_token).await?;
            let mut rx = st.bus.subscribe(&session_topic(session_id));
            rx.ready(BUS_READY_WAIT).await;
            let rows = chat::recent_session_events(&st.db, session_id, SESSION_REPLAY).await?;
            let mut follow = SessionFollow {
                st,
                rx,
                session_id,
                pending: VecDeque::new(),
                queued: HashMap::new(),
                turns: VecDeque::new(),
                ahead: BTreeMap::new(),
                filled_at: None,
                gap_since: None,
            };
            for ev in events(rows) {
                follow.offer(ev, false);
            }
            Ok::<_, GqlError>(handing.pass(stream::unfold(follow, SessionFollow::next)))
        })
        .await
    }
}
