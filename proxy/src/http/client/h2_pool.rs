//! The pool of multiplexed HTTP/2 connections keyed by destination, and [`Reuse`], when a pooled
//! connection stops taking new requests.
//!
//! Promises of [`H2Pool`]:
//! - at most one connection attempt per key at a time; concurrent requests for a key that is
//!   still connecting wait for that attempt instead of opening their own;
//! - with `maxConcurrentStreams` N, a connection carries at most N requests at once; a stream
//!   counts from checkout until its response body ends, fails or is dropped ([`StreamGuard`],
//!   carried in [`crate::http::body::UpstreamBody`]). When every connection of the key is full
//!   the request opens (or waits for) another, as Envoy's pool does;
//! - unlimited streams (the default): one connection per key, as before, and a request costs a
//!   lock and a clone of the connection handle, nothing allocated.

use crate::http::ProxyError;
use crate::http::body::RequestBody;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

type Connecting<B> =
    Shared<BoxFuture<'static, Result<SendRequest<RequestBody<B>>, Arc<ProxyError>>>>;

/// The connections of one key and its attempt in flight, if any (numbered, so that only the
/// request that finds its own attempt still pending installs the result).
struct Conns<B> {
    ready: Vec<Pooled<B>>,
    connecting: Option<(u64, Connecting<B>)>,
    attempts: u64,
}

/// A live connection and what [`Reuse`] needs to know about it.
struct Pooled<B> {
    send: SendRequest<RequestBody<B>>,
    born: Instant,
    last_used: Instant,
    requests: u32,
    /// Streams in flight, counted only when the key limits them.
    streams: Option<Arc<AtomicU32>>,
}

/// A request's hold on one stream of a pooled connection; released on drop.
pub struct StreamGuard(Arc<AtomicU32>);

/// A connection handle for one request, and its stream slot when streams are limited.
pub struct Lease<B> {
    pub send: SendRequest<RequestBody<B>>,
    pub stream: Option<StreamGuard>,
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
    /// `http.maxConcurrentStreams`: requests in flight on one connection; when every
    /// connection of a key is at it, the next request opens another connection.
    pub max_streams: Option<NonZeroU32>,
}

// === impl Reuse ===

impl Reuse {
    /// These limits with the idle timeout at most `max` (the proxy's own, for HTTP/1 keep-alive
    /// connections).
    pub fn idle_at_most(self, max: Duration) -> Self {
        Self {
            idle: Some(self.idle.map_or(max, |i| i.min(max))),
            ..self
        }
    }

    /// Whether a connection opened at `born`, last used at `last_used`, that carried `requests`,
    /// may take one more at `now`.
    pub(super) fn allows(
        &self,
        born: Instant,
        last_used: Instant,
        requests: u32,
        now: Instant,
    ) -> bool {
        self.max_requests.is_none_or(|m| requests < m.get())
            && self.max_age.is_none_or(|a| now.duration_since(born) < a)
            && self.idle.is_none_or(|i| now.duration_since(last_used) < i)
    }
}

/// HTTP/2 connections shared by every request to the same key, for requests with bodies of
/// type `B`.
pub struct H2Pool<K, B = Incoming> {
    // Keys come from config (addresses, identities, policy), never from clients: a fast hasher
    // is safe here, and SipHash over an identity was a visible share of a request's cost.
    slots: Mutex<HashMap<K, Conns<B>, foldhash::fast::RandomState>>,
}

// === impl H2Pool ===

impl<K: Hash + Eq + Clone, B> H2Pool<K, B> {
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::default()),
        }
    }

    /// Returns a live connection for `key`, connecting with `connect` if there is none.
    pub async fn get<F, Fut>(&self, key: &K, connect: F) -> Result<Lease<B>, ProxyError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<SendRequest<RequestBody<B>>, ProxyError>> + Send + 'static,
        B: 'static,
    {
        self.get_with(key, Reuse::default(), connect).await
    }

    /// Like [`H2Pool::get`], retiring pooled connections first when `reuse` says they have
    /// served enough, and skipping those at `reuse.max_streams`; counts the request against
    /// the connection it returns. `connect` is called for each attempt this request starts
    /// (more than one only when others took the room of the connection it opened).
    pub async fn get_with<F, Fut>(
        &self,
        key: &K,
        reuse: Reuse,
        connect: F,
    ) -> Result<Lease<B>, ProxyError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<SendRequest<RequestBody<B>>, ProxyError>> + Send + 'static,
        B: 'static,
    {
        loop {
            let (id, fut) = {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let waiting = match slots.get_mut(key) {
                    Some(conns) => {
                        if let Some(lease) = conns.checkout(&reuse, now) {
                            return Ok(lease);
                        }
                        conns.connecting.clone()
                    }
                    None => None,
                };
                match waiting {
                    Some(w) => w,
                    None => {
                        let conns = slots.entry(key.clone()).or_insert_with(Conns::new);
                        conns.attempts += 1;
                        let f = connect().map(|r| r.map_err(Arc::new)).boxed().shared();
                        conns.connecting = Some((conns.attempts, f.clone()));
                        (conns.attempts, f)
                    }
                }
            };
            let res = fut.await;
            {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(conns) = slots.get_mut(key)
                    && conns.connecting.as_ref().is_some_and(|(i, _)| *i == id)
                {
                    conns.connecting = None;
                    match &res {
                        Ok(send) => conns.ready.push(Pooled::new(send.clone(), &reuse)),
                        Err(_) if conns.ready.is_empty() => {
                            slots.remove(key);
                        }
                        Err(_) => {}
                    }
                }
            }
            match res {
                Err(e) => return Err(ProxyError::Shared(e)),
                // Closed as soon as opened: hand it out so the request fails with the
                // connection's own error instead of dialling in a loop.
                Ok(send) if send.is_closed() => return Ok(Lease { send, stream: None }),
                // Take a stream on it (or on any connection with room) on the next turn.
                Ok(_) => {}
            }
        }
    }

    /// Number of keys with a connection or an attempt in flight.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of live connections for `key`.
    pub fn connections(&self, key: &K) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(key).map_or(0, |c| c.ready.len())
    }
}

impl<K: Hash + Eq + Clone, B> Default for H2Pool<K, B> {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Conns ===

impl<B> Conns<B> {
    fn new() -> Self {
        Self {
            ready: Vec::new(),
            connecting: None,
            attempts: 0,
        }
    }

    /// Drops retired connections, then leases a stream on the first one with room.
    fn checkout(&mut self, reuse: &Reuse, now: Instant) -> Option<Lease<B>> {
        self.ready
            .retain(|p| !p.send.is_closed() && reuse.allows(p.born, p.last_used, p.requests, now));
        let p = self
            .ready
            .iter_mut()
            .find(|p| p.has_room(reuse.max_streams))?;
        p.requests += 1;
        p.last_used = now;
        // Counted under the pool's lock; guards only ever decrement, so the limit holds.
        let stream = p.streams.as_ref().map(|s| {
            s.fetch_add(1, Ordering::AcqRel);
            StreamGuard(s.clone())
        });
        Some(Lease {
            send: p.send.clone(),
            stream,
        })
    }
}

// === impl Pooled ===

impl<B> Pooled<B> {
    fn new(send: SendRequest<RequestBody<B>>, reuse: &Reuse) -> Self {
        let now = Instant::now();
        Self {
            send,
            born: now,
            last_used: now,
            requests: 0,
            streams: reuse.max_streams.map(|_| Arc::new(AtomicU32::new(0))),
        }
    }

    fn has_room(&self, max: Option<NonZeroU32>) -> bool {
        match (max, &self.streams) {
            (Some(max), Some(n)) => n.load(Ordering::Acquire) < max.get(),
            _ => true,
        }
    }
}

// === impl StreamGuard ===

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
