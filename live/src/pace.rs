//! Requests at least a fixed interval apart, in the order they asked: a
//! vendor's documented rate kept from this process's side (Revolut's 60 a
//! minute, 17TRACK's 3 a second). Cheap to clone: clones share the slots.

use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Pacer {
    /// When the next request may go.
    next: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl Pacer {
    /// Waits for this request's slot, `interval` after the previous one's.
    #[allow(clippy::disallowed_methods, reason = "the adapters pace real requests in real time")]
    pub async fn wait(&self, interval: Duration) {
        let at = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}
