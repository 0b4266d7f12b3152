//! Pooled HTTP/1 keep-alive connections to plaintext endpoints, per key, under a destination's
//! [`Reuse`] limits.
//!
//! Promises:
//! - a connection carries one request at a time and goes back to the pool once hyper says it is
//!   ready again (the response body was read to its end); the most recently used is reused first;
//! - `max_requests`: the request that reaches it is sent with `connection: close` and its
//!   connection is not pooled again (1: a connection per request, no keep-alive);
//! - `max_age`, `idle`: a pooled connection past either is closed instead of reused. Expired
//!   connections are dropped when their key is next used, and every new dial sweeps all keys,
//!   so endpoints that went away do not keep sockets open for long.

use super::Reuse;
use crate::http::body::RequestBody;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use tokio::time::Instant;

/// Idle HTTP/1 connections by key.
pub struct H1Pool<K, B> {
    // Config-derived keys: a fast hasher is safe (see the HTTP/2 pool).
    idle: Mutex<HashMap<K, Vec<Idle<B>>, foldhash::fast::RandomState>>,
}

struct Idle<B> {
    conn: H1Conn<B>,
    /// When it must no longer be reused (age or idleness, whichever comes first).
    expires: Option<Instant>,
}

/// A connection checked out for one request.
pub struct H1Conn<B> {
    pub send: SendRequest<RequestBody<B>>,
    born: Instant,
    requests: u32,
    reused: bool,
}

// === impl H1Conn ===

impl<B> H1Conn<B> {
    pub fn new(send: SendRequest<RequestBody<B>>) -> Self {
        Self {
            send,
            born: Instant::now(),
            requests: 0,
            reused: false,
        }
    }

    /// Whether the connection came from the pool (so a refusal may be a close race, not the
    /// endpoint's answer).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Counts one more request; true if `reuse` says it is the connection's last.
    pub fn start_request(&mut self, reuse: &Reuse) -> bool {
        self.requests += 1;
        reuse.max_requests.is_some_and(|m| self.requests >= m.get())
    }
}

// === impl H1Pool ===

impl<K: Hash + Eq, B> H1Pool<K, B> {
    pub fn new() -> Self {
        Self {
            idle: Mutex::new(HashMap::default()),
        }
    }

    /// The most recently pooled connection of `key` that may still serve, dropping the
    /// expired or closed ones on the way.
    pub fn checkout(&self, key: &K) -> Option<H1Conn<B>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(Idle { mut conn, expires }) = list.pop() {
            if conn.send.is_ready() && expires.is_none_or(|e| now < e) {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Pools `conn` (now idle) unless `reuse` retires it.
    pub fn put(&self, key: K, conn: H1Conn<B>, reuse: &Reuse) {
        let now = Instant::now();
        if !reuse.allows(conn.born, now, conn.requests, now) || !conn.send.is_ready() {
            return;
        }
        let expires = match (reuse.max_age, reuse.idle) {
            (None, None) => None,
            (a, i) => {
                let by_age = a.map(|a| conn.born + a);
                let by_idle = i.map(|i| now + i);
                by_age.into_iter().chain(by_idle).min()
            }
        };
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(key).or_default().push(Idle { conn, expires });
    }

    /// Closes every expired or closed idle connection, of every key.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain(|i| !i.conn.send.is_closed() && i.expires.is_none_or(|e| now < e));
            !list.is_empty()
        });
    }

    /// Idle connections pooled for `key` (tests inspect the pool with it).
    #[cfg(test)]
    pub fn idle(&self, key: &K) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(key).map_or(0, Vec::len)
    }
}

impl<K: Hash + Eq, B> Default for H1Pool<K, B> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    type Body = http_body_util::Empty<bytes::Bytes>;

    /// A live HTTP/1 client connection over an in-memory pipe (its server end is kept open).
    async fn conn() -> (H1Conn<Body>, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(1024);
        let (mut send, driver) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(driver);
        // As after a response: the driver has run and the connection wants a request.
        send.ready().await.unwrap();
        (H1Conn::new(send), server)
    }

    #[tokio::test(start_paused = true)]
    async fn a_pooled_connection_past_its_max_age_is_not_reused() {
        let pool = H1Pool::new();
        let reuse = Reuse {
            max_age: Some(Duration::from_secs(60)),
            ..Reuse::default()
        };
        let (c, _server) = conn().await;
        pool.put("k", c, &reuse);
        tokio::time::advance(Duration::from_secs(59)).await;
        let c = pool
            .checkout(&"k")
            .expect("younger than maxConnectionDuration");
        assert!(c.reused());
        pool.put("k", c, &reuse);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(pool.checkout(&"k").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pooled_connection_idle_past_the_timeout_is_not_reused() {
        let pool = H1Pool::new();
        let reuse = Reuse {
            idle: Some(Duration::from_secs(5)),
            ..Reuse::default()
        };
        let (c, _server) = conn().await;
        pool.put("k", c, &reuse);
        tokio::time::advance(Duration::from_secs(4)).await;
        let c = pool.checkout(&"k").expect("idle for less than idleTimeout");
        // Putting it back restarts its idle clock.
        pool.put("k", c, &reuse);
        tokio::time::advance(Duration::from_secs(4)).await;
        let c = pool.checkout(&"k").expect("idle for 4 s again");
        pool.put("k", c, &reuse);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(pool.checkout(&"k").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_closes_expired_connections_of_every_key() {
        let pool = H1Pool::new();
        let short = Reuse {
            idle: Some(Duration::from_secs(5)),
            ..Reuse::default()
        };
        let (a, _sa) = conn().await;
        let (b, _sb) = conn().await;
        pool.put("gone", a, &short);
        pool.put("kept", b, &Reuse::default());
        tokio::time::advance(Duration::from_secs(5)).await;
        pool.sweep();
        assert_eq!(pool.idle(&"gone"), 0);
        assert_eq!(pool.idle(&"kept"), 1);
    }

    #[tokio::test]
    async fn a_connection_that_served_max_requests_is_not_pooled() {
        let pool = H1Pool::new();
        let reuse = Reuse {
            max_requests: NonZeroU32::new(2),
            ..Reuse::default()
        };
        let (mut c, _server) = conn().await;
        assert!(!c.start_request(&reuse));
        pool.put("k", c, &reuse);
        let mut c = pool.checkout(&"k").unwrap();
        assert!(c.start_request(&reuse), "the second request is the last");
        pool.put("k", c, &reuse);
        assert_eq!(pool.idle(&"k"), 0);
    }
}
