//! Helpers shared by the bus tests: a handler that forwards what it receives, and
//! waiting for deliveries without hanging forever.

use std::sync::Arc;
use std::time::Duration;

use pulse_core::bus::{Handler, HandlerResult};
use pulse_core::Event;
use tokio::sync::mpsc;

/// A handler that sends every event it handles to the returned receiver.
pub(crate) fn recorder() -> (impl Handler, mpsc::UnboundedReceiver<Arc<Event>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: Arc<Event>| {
        let tx = tx.clone();
        async move {
            // The receiver may be gone when a test is done listening; that is fine.
            let _ = tx.send(event);
            HandlerResult::Ok(())
        }
    };
    (handler, rx)
}

/// Receives `n` events, failing the test after 10 s (of paused or real time).
pub(crate) async fn recv_n(
    rx: &mut mpsc::UnboundedReceiver<Arc<Event>>,
    n: usize,
) -> Vec<Arc<Event>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(event)) => out.push(event),
            Ok(None) => panic!("handler dropped after {} of {n} events", out.len()),
            Err(_) => panic!("timed out after {} of {n} events", out.len()),
        }
    }
    out
}

/// An event of type `ty` carrying the sequence number `seq` (extension `seq`).
pub(crate) fn numbered(ty: &str, seq: u64) -> Event {
    Event::new(ty.to_owned()).with_extension("seq", seq)
}

/// The `seq` extension of an event.
pub(crate) fn seq(event: &Event) -> u64 {
    event.extensions["seq"].as_u64().expect("seq extension")
}

/// Waits until `check` holds, polling every millisecond, failing after 10 s.
pub(crate) async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
