//! What a subscription runs for each event: the [`Handler`] trait, implemented for every
//! async closure `|event: Arc<Event>| async move { ... }`.
//!
//! The trait returns `impl Future` rather than a boxed future so that a subscription's
//! worker is compiled for its handler and calling it allocates nothing: at millions of
//! events per second a `Box` per delivery is a measurable share of the budget. Code that
//! needs handlers as trait objects (a server keeping a map of them) wraps them in
//! [`SharedHandler`], which boxes the future once per call.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::event::Event;

/// The error a handler returns; any `std::error::Error` converts into it with `?`.
///
/// It is a boxed error rather than an enum because handlers are user code with their own
/// error types; the bus only needs the text (for the dead-letter record). Like
/// `anyhow::Error`, it does not implement `std::error::Error` itself, which is what lets
/// every error type convert into it.
///
/// ```
/// use pulse_core::bus::HandlerError;
/// fn parse(text: &str) -> Result<u32, HandlerError> {
///     Ok(text.parse::<u32>()?)
/// }
/// assert!(parse("12").is_ok());
/// assert!(parse("x").unwrap_err().to_string().contains("invalid digit"));
/// assert_eq!(HandlerError::msg("no such user").to_string(), "no such user");
/// ```
pub struct HandlerError {
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl HandlerError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            inner: message.to_string().into(),
        }
    }

    /// The underlying error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self {
            inner: Box::new(error),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)?;
        let mut source = self.inner.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// Handles the events of a subscription.
///
/// A handler may run on several events at once (different subjects, when the
/// subscription's concurrency is above 1), hence `Sync`. An `Err` or a panic is a failed
/// attempt: the event is retried by the subscription's [`RetryPolicy`](super::RetryPolicy)
/// and then dead-lettered.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use pulse_core::bus::{Handler, HandlerResult};
/// use pulse_core::Event;
///
/// struct CountBeats(AtomicU64);
///
/// impl Handler for CountBeats {
///     async fn handle(&self, _event: Arc<Event>) -> HandlerResult {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: Arc<Event>) -> impl Future<Output = HandlerResult> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send,
{
    fn handle(&self, event: Arc<Event>) -> impl Future<Output = HandlerResult> + Send {
        self(event)
    }
}

/// The dyn-compatible form of [`Handler`], implemented for every handler.
pub trait DynHandler: Send + Sync + 'static {
    /// Handles one event, the future boxed.
    fn handle_boxed(&self, event: Arc<Event>) -> BoxFuture<'_, HandlerResult>;
}

impl<H: Handler> DynHandler for H {
    fn handle_boxed(&self, event: Arc<Event>) -> BoxFuture<'_, HandlerResult> {
        Box::pin(self.handle(event))
    }
}

/// A type-erased, cloneable handler, for code that keeps handlers of different types
/// together. It costs one allocation per call, which plain handlers do not.
///
/// ```
/// use std::sync::Arc;
/// use pulse_core::bus::{HandlerResult, SharedHandler};
/// use pulse_core::Event;
///
/// let handlers: Vec<SharedHandler> = vec![
///     SharedHandler::new(|_event: Arc<Event>| async { HandlerResult::Ok(()) }),
///     SharedHandler::new(|event: Arc<Event>| async move {
///         println!("{}", event.ty);
///         HandlerResult::Ok(())
///     }),
/// ];
/// assert_eq!(handlers.len(), 2);
/// ```
#[derive(Clone)]
pub struct SharedHandler(Arc<dyn DynHandler>);

impl SharedHandler {
    /// Wraps a handler.
    pub fn new(handler: impl Handler) -> Self {
        Self(Arc::new(handler))
    }
}

impl fmt::Debug for SharedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedHandler")
    }
}

impl Handler for SharedHandler {
    fn handle(&self, event: Arc<Event>) -> impl Future<Output = HandlerResult> + Send {
        self.0.handle_boxed(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_text_includes_the_causes() {
        let err = HandlerError::from(Outer(std::io::Error::other("disk full")));
        assert_eq!(err.to_string(), "outer: disk full");
    }

    #[tokio::test]
    async fn closures_and_shared_handlers_run() {
        let closure = |event: Arc<Event>| async move {
            if event.ty == "bad.type" {
                Err(HandlerError::msg("bad"))
            } else {
                Ok(())
            }
        };
        assert!(closure.handle(Arc::new(Event::new("a.b"))).await.is_ok());
        let shared = SharedHandler::new(closure);
        let err = shared
            .handle(Arc::new(Event::new("bad.type")))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "bad");
    }
}
