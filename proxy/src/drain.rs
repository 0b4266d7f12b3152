//! Graceful shutdown: one [`Signal`] starts draining, every [`Watch`] learns of it, and the signal
//! knows when the last watch is gone (every connection finished).

use tokio::sync::watch;

/// Held by whoever decides to shut down.
pub struct Signal(watch::Sender<bool>);

/// Held by every listener and connection; dropping it says "I am done".
#[derive(Clone)]
pub struct Watch(watch::Receiver<bool>);

pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    (Signal(tx), Watch(rx))
}

// === impl Signal ===

impl Signal {
    /// Tells every watch to drain, then waits until all of them are dropped.
    pub async fn drain(self) {
        self.0.send_replace(true);
        self.0.closed().await;
    }

    /// A new watch (for tasks started after the signal was created).
    pub fn watch(&self) -> Watch {
        Watch(self.0.subscribe())
    }
}

// === impl Watch ===

impl Watch {
    /// Resolves once draining has begun.
    pub async fn signaled(&mut self) {
        // An error means the signal was dropped without draining: treat it as a drain too.
        let _ = self.0.wait_for(|draining| *draining).await;
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_every_watch() {
        let (signal, watch) = channel();
        let mut w1 = watch.clone();
        let w2 = watch;
        let task = tokio::spawn(async move {
            w1.signaled().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(w1);
        });
        drop(w2);
        let start = tokio::time::Instant::now();
        signal.drain().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        task.await.unwrap();
    }
}
