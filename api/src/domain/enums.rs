//! The closed sets of the domain, shared by the database (stored as their
//! SCREAMING_CASE names) and the GraphQL schema.

use async_graphql::Enum;

use crate::error::AppError;

macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vdoc])* #[serde(rename = $s)] $variant),+ }

        impl $name {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }

            /// Reads a stored name; unknown names are a data error.
            pub fn from_stored(s: &str) -> Result<Self, AppError> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    other => Err(AppError::internal(format!(
                        "unknown {} {other:?} in the database", stringify!($name)
                    ))),
                }
            }
        }
    };
}

stored_enum!(
    /// What an org pays for; features unlock at higher plans.
    Plan {
        /// Free: knowledge bases, chat widgets, contact form.
        Free = "FREE",
        /// Growth: adds custom bots.
        Growth = "GROWTH",
        /// Pro: adds AI-generated walkthroughs.
        Pro = "PRO",
        /// Enterprise: everything.
        Enterprise = "ENTERPRISE",
    }
);

stored_enum!(
    /// How far the mapping of a site's pages and elements has got.
    MappingStatus {
        /// Not mapped yet.
        NotStarted = "NOT_STARTED",
        /// Mapping is running.
        InProgress = "IN_PROGRESS",
        /// The app map is complete and usable by the flow generator.
        Completed = "COMPLETED",
        /// Mapping failed.
        Failed = "FAILED",
    }
);

stored_enum!(
    /// Whether a flow or tooltip is visible to visitors.
    ContentStatus {
        /// Being edited; never shown.
        Draft = "DRAFT",
        /// Live.
        Published = "PUBLISHED",
    }
);

stored_enum!(
    /// Who made a flow or tooltip.
    ContentSource {
        /// A person in the dashboard.
        Manual = "MANUAL",
        /// The flow generator.
        Ai = "AI",
    }
);

stored_enum!(
    /// Who a flow or tooltip auto-shows to.
    Audience {
        /// Every visitor.
        All = "ALL",
        /// Nobody: it only runs when the chat starts it.
        NoUsers = "NO_USERS",
        /// Visitors matching `audienceRules`.
        Rules = "RULES",
    }
);

stored_enum!(
    /// Where a flow step's tooltip sits relative to its target.
    Placement {
        /// Above the target.
        Top = "TOP",
        /// Below the target.
        Bottom = "BOTTOM",
        /// Left of the target.
        Left = "LEFT",
        /// Right of the target.
        Right = "RIGHT",
        /// Centred on the page, no target arrow.
        Center = "CENTER",
    }
);

stored_enum!(
    /// Where a support ticket came from.
    TicketSource {
        /// The `widget.js` contact form.
        ContactForm = "CONTACT_FORM",
        /// A visitor asked for a human in the chat.
        Handoff = "HANDOFF",
        /// A downvote that asked for follow-up.
        Feedback = "FEEDBACK",
    }
);

stored_enum!(
    /// Where a support ticket is in its life.
    TicketStatus {
        /// New, nobody has looked.
        Open = "OPEN",
        /// Being worked on or waiting for the visitor.
        Pending = "PENDING",
        /// Done.
        Closed = "CLOSED",
    }
);

impl Plan {
    /// Whether this plan includes everything `required` does.
    pub fn includes(self, required: Plan) -> bool {
        self >= required
    }

    /// Fails with `PLAN_REQUIRED` unless this plan includes `required`.
    pub fn require(self, required: Plan) -> Result<(), AppError> {
        if self.includes(required) {
            Ok(())
        } else {
            Err(AppError::PlanRequired {
                required: required.as_str(),
            })
        }
    }
}

stored_enum!(
    /// A step of a chat turn, in the order SPEC §3 gives them.
    TurnStatus {
        /// The visitor's message is stored; the bot is working on it.
        Analyzing = "ANALYZING",
        /// A piece of the answer text (`delta`), streamed as it is generated.
        AnswerDelta = "ANSWER_DELTA",
        /// The full answer (`text`) with its `citations`.
        Answered = "ANSWERED",
        /// The matcher's LLM call (which published content fits, walkthrough or answer): its `model` and `tokensUsed`.
        Matching = "MATCHING",
        /// The generator's LLM call (a new flow from the app map): its `model` and `tokensUsed`.
        Generating = "GENERATING",
        /// A published flow or tooltip matches the question (`content`).
        MatchedContent = "MATCHED_CONTENT",
        /// A new flow was generated for the question (`content`).
        GeneratedContent = "GENERATED_CONTENT",
        /// The widget should go to `navigateTo` to start the content.
        Navigating = "NAVIGATING",
        /// The canned reply (AI off, unavailable, or no answer), in `text`.
        Fallback = "FALLBACK",
        /// The visitor was handed off to a human; `text` is the hand-off message.
        Handoff = "HANDOFF",
        /// The org is out of credits; `text` is the canned reply.
        InsufficientCredits = "INSUFFICIENT_CREDITS",
        /// Something failed; `text` says what the visitor sees.
        Error = "ERROR",
        /// The turn is over; no more events follow.
        Completed = "COMPLETED",
    }
);

stored_enum!(
    /// What the walkthrough runtime reports about a run of a flow or tooltip.
    TourEventKind {
        /// The run began (its first step is being looked for).
        Started = "STARTED",
        /// Step `step` was shown.
        Step = "STEP",
        /// The visitor finished the last step.
        Completed = "COMPLETED",
        /// The visitor closed the tour (or it ended on a missing element) at step `step`.
        Dismissed = "DISMISSED",
        /// Step `step`'s element could not be found in time (`locators`: every way tried).
        TargetMissing = "TARGET_MISSING",
    }
);

stored_enum!(
    /// Where a tour run is.
    TourRunStatus {
        /// Running (or abandoned without a word: the page was closed).
        Started = "STARTED",
        /// Finished at the last step.
        Completed = "COMPLETED",
        /// Closed before the end.
        Dismissed = "DISMISSED",
    }
);

stored_enum!(
    /// What started a tour run.
    TourTrigger {
        /// The server, on a page matching the content's `autoStart` pattern.
        Auto = "AUTO",
        /// The chat's walkthrough pill, the host page through the SDK, or the visitor.
        Manual = "MANUAL",
    }
);
