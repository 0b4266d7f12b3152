//! The pool of multiplexed HTTP/2 connections keyed by destination, and [`Reuse`], when a pooled
//! connection stops taking new requests.
//!
//! Promise of [`H2Pool`]: at most one connection attempt per key at a time; concurrent requests
//! for a key that is still connecting wait for that attempt instead of opening their own.

use crate::http::ProxyError;
use crate::http::body::RequestBody;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

type Connecting<B> =
    Shared<BoxFuture<'static, Result<SendRequest<RequestBody<B>>, Arc<ProxyError>>>>;

enum Slot<B> {
    Ready(Pooled<B>),
    Connecting(Connecting<B>),
}

/// A live connection and what [`Reuse`] needs to know about it.
struct Pooled<B> {
    send: SendRequest<RequestBody<B>>,
    born: Instant,
    last_used: Instant,
    requests: u32,
}

/// When a pooled connection stops taking new requests (DestinationRule
/// `connectionPool.http.maxRequestsPerConnection`, `tcp.maxConnectionDuration`,
/// `http.idleTimeout`/`tcp.idleTimeout`). A retired connection is dropped from the pool and
/// closes once its requests in flight finish (graceful: they are never cut); the next request
/// opens a new one. `None`: no limit. Idleness is judged when a request next wants the
/// connection; an idle connection nobody asks for is left to the peer's own idle timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reuse {
    pub max_requests: Option<NonZeroU32>,
    pub max_age: Option<Duration>,
    pub idle: Option<Duration>,
}

// === impl Reuse ===

impl Reuse {
    /// Whether a connection opened at `born`, last used at `last_used`, that carried `requests`,
    /// may take one more at `now`.
    fn allows(&self, born: Instant, last_used: Instant, requests: u32, now: Instant) -> bool {
        self.max_requests.is_none_or(|m| requests < m.get())
            && self.max_age.is_none_or(|a| now.duration_since(born) < a)
            && self.idle.is_none_or(|i| now.duration_since(last_used) < i)
    }
}

/// HTTP/2 connections shared by every request to the same key, for requests with bodies of
/// type `B`.
pub struct H2Pool<K, B = Incoming> {
    slots: Mutex<HashMap<K, Slot<B>>>,
}

// === impl H2Pool ===

impl<K: Hash + Eq + Clone, B> H2Pool<K, B> {
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Returns a live connection for `key`, connecting with `connect` if there is none.
    pub async fn get<F, Fut>(
        &self,
        key: &K,
        connect: F,
    ) -> Result<SendRequest<RequestBody<B>>, ProxyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SendRequest<RequestBody<B>>, ProxyError>> + Send + 'static,
        B: 'static,
    {
        self.get_with(key, Reuse::default(), connect).await
    }

    /// Like [`H2Pool::get`], retiring the pooled connection first when `reuse` says it has
    /// served enough; counts the request against the connection it returns.
    pub async fn get_with<F, Fut>(
        &self,
        key: &K,
        reuse: Reuse,
        connect: F,
    ) -> Result<SendRequest<RequestBody<B>>, ProxyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SendRequest<RequestBody<B>>, ProxyError>> + Send + 'static,
        B: 'static,
    {
        let fut = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match slots.get_mut(key) {
                Some(Slot::Ready(p))
                    if !p.send.is_closed()
                        && reuse.allows(p.born, p.last_used, p.requests, now) =>
                {
                    p.requests += 1;
                    p.last_used = now;
                    return Ok(p.send.clone());
                }
                Some(Slot::Connecting(f)) => f.clone(),
                _ => {
                    let f = connect().map(|r| r.map_err(Arc::new)).boxed().shared();
                    slots.insert(key.clone(), Slot::Connecting(f.clone()));
                    f
                }
            }
        };
        let res = fut.await;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Slot::Connecting(_)) = slots.get(key) {
            match &res {
                Ok(s) => {
                    let now = Instant::now();
                    let pooled = Pooled {
                        send: s.clone(),
                        born: now,
                        last_used: now,
                        requests: 0,
                    };
                    slots.insert(key.clone(), Slot::Ready(pooled));
                }
                Err(_) => {
                    slots.remove(key);
                }
            }
        }
        // Every request that waited for this attempt counts against the new connection.
        if let (Some(Slot::Ready(p)), Ok(_)) = (slots.get_mut(key), &res) {
            p.requests += 1;
        }
        res.map_err(ProxyError::Shared)
    }

    /// Number of keys with a connection or an attempt in flight.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, B> Default for H2Pool<K, B> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reuse_retires_a_connection_after_max_requests_age_or_idleness() {
        let born = Instant::now();
        let unlimited = Reuse::default();
        assert!(unlimited.allows(born, born, u32::MAX - 1, born + Duration::from_secs(86400)));

        let ten = Reuse {
            max_requests: NonZeroU32::new(10),
            ..Reuse::default()
        };
        assert!(ten.allows(born, born, 9, born));
        assert!(
            !ten.allows(born, born, 10, born),
            "the 11th request needs a new connection"
        );

        let aged = Reuse {
            max_age: Some(Duration::from_secs(60)),
            ..Reuse::default()
        };
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(aged.allows(born, Instant::now(), 0, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!aged.allows(born, Instant::now(), 0, Instant::now()));

        let idle = Reuse {
            idle: Some(Duration::from_secs(5)),
            ..Reuse::default()
        };
        let used = Instant::now();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(idle.allows(born, used, 0, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!idle.allows(born, used, 0, Instant::now()));
    }
}
