//! Subscriptions whose events the graphql-ws socket resolves one at a time.
//!
//! async-graphql keeps one stream per running subscription that holds the
//! parsed operation, its context and room for every future of an execution:
//! about 8.5 KB that an idle widget's subscription would carry for hours. So
//! over graphql-ws a subscription runs in two parts instead:
//! - the operation is executed once with a [`HandOver`] in its data: its
//!   root field does its setup (authorization, the bus subscription, the
//!   replay) and hands its stream of events over instead of returning it, so
//!   that execution ends at once;
//! - each event the socket then takes from the handed-over stream is
//!   resolved by executing the operation again with the event in its data
//!   ([`Delivered`]): the field it came from yields that one event.
//!
//! An idle subscription then holds only its own follow state (the bus
//! subscription, what it has delivered) and the operation's text. Anywhere
//! else (a test calling `execute_stream`, say) the fields return their
//! streams as usual.

use std::{
    any::Any,
    sync::{Arc, Mutex},
};

use async_graphql::Context;
use futures_util::{Stream, StreamExt, stream::BoxStream};

/// A root field's events, type-erased until [`Delivered`] brings one back.
pub type Events = BoxStream<'static, Box<dyn Any + Send>>;

/// Where the root field of a first execution leaves its event stream, under
/// its response key (alias or name). A subscription selects one root field
/// (`operation::admit` refuses more); were a second to come, it would keep
/// its stream and run inside the execution as usual.
#[derive(Default)]
pub struct HandOver(Mutex<Option<(String, Events)>>);

impl HandOver {
    /// The stream handed over, if any.
    pub fn take(&self) -> Option<(String, Events)> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, Events)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One event to resolve: the root field under `key` yields it, once.
pub struct Delivered {
    key: String,
    event: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Delivered {
    pub fn new(key: String, event: Box<dyn Any + Send>) -> Self {
        Self {
            key,
            event: Mutex::new(Some(event)),
        }
    }
}

fn response_key(ctx: &Context<'_>) -> String {
    let field = ctx.field();
    field.alias().unwrap_or(field.name()).to_owned()
}

/// In an execution that resolves a delivered event, what this field yields:
/// the event if it is this field's (of type `T`), otherwise nothing. `None`
/// in any other execution.
pub(crate) fn delivered<T: Send + 'static>(ctx: &Context<'_>) -> Option<BoxStream<'static, T>> {
    let delivered = ctx.data_opt::<Delivered>()?;
    let event = (delivered.key == response_key(ctx))
        .then(|| {
            delivered
                .event
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
        })
        .flatten()
        .and_then(|event| event.downcast::<T>().ok());
    Some(futures_util::stream::iter(event.map(|e| *e)).boxed())
}

/// How a root field passes on its events: into the execution's
/// [`HandOver`] when there is one, or as its own stream.
pub(crate) struct Handing {
    slot: Option<(Arc<HandOver>, String)>,
}

impl Handing {
    pub(crate) fn of(ctx: &Context<'_>) -> Self {
        Self {
            slot: ctx
                .data_opt::<Arc<HandOver>>()
                .map(|slot| (slot.clone(), response_key(ctx))),
        }
    }

    /// The stream the field returns: `events` itself, or nothing when they
    /// were handed over.
    pub(crate) fn pass<T: Send + 'static>(
        self,
        events: impl Stream<Item = T> + Send + 'static,
    ) -> BoxStream<'static, T> {
        if let Some((slot, key)) = self.slot {
            let mut handed = slot.lock();
            if handed.is_none() {
                let erased = events.map(|e| Box::new(e) as Box<dyn Any + Send>).boxed();
                *handed = Some((key, erased));
                return futures_util::stream::empty().boxed();
            }
        }
        events.boxed()
    }
}
