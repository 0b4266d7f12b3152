//! The destination dispatch: sends a request to the destination its route chose (a service, or
//! one of its subsets), through that destination's stack.
//!
//! Promises: a request without a [`DestinationKey`] goes to the service the connection is for,
//! no subset; a key naming a service or subset this proxy does not know is `503 NR` (what Istio
//! users see for a VirtualService naming a subset no DestinationRule defines), never another
//! destination. The destinations come
//! from one [`Services`] snapshot, so a request resolves against the config it started with.

use super::DestinationKey;
use super::cache::{Destination, Services};
use crate::http::{Body, ProxyError};
use futures_util::future::{Either, Ready, ready};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Builds the stack below dispatch for one destination (breaker → balancer → endpoint).
pub trait NewDestination<B> {
    type Service: tower::Service<Request<B>, Response = Response<Body>, Error = ProxyError>;
    fn new_destination(&self, dest: &Arc<Destination>) -> Self::Service;
}

/// The dispatch layer.
#[derive(Clone)]
pub struct Dispatch<N> {
    services: Arc<Services>,
    default: Arc<Destination>,
    new_destination: N,
}

// === impl Dispatch ===

impl<N> Dispatch<N> {
    pub fn new(services: Arc<Services>, default: Arc<Destination>, new_destination: N) -> Self {
        Self {
            services,
            default,
            new_destination,
        }
    }
}

impl<B, N> tower::Service<Request<B>> for Dispatch<N>
where
    N: NewDestination<B>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<
        Ready<Result<Response<Body>, ProxyError>>,
        <N::Service as tower::Service<Request<B>>>::Future,
    >;

    /// Always ready: the destinations' limits answer at once (Envoy's overflow).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let dest = match req.extensions().get::<DestinationKey>() {
            None => &self.default,
            Some(key) => match self.services.destination(key) {
                Some(d) => d,
                None => {
                    let name = match &key.subset {
                        Some(s) => format!("{} subset {s} is not a known destination", key.service),
                        None => format!("{} is not a known destination", key.service),
                    };
                    return Either::Left(ready(Err(ProxyError::UnknownDestination(name))));
                }
            },
        };
        let mut svc = self.new_destination.new_destination(dest);
        Either::Right(tower::Service::call(&mut svc, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use sinew_proto::config::v1 as pb;
    use tower::Service;

    /// Answers with the destination it was built for, in a header.
    #[derive(Clone)]
    struct Echo;
    struct EchoDest(String);

    impl<B> NewDestination<B> for Echo {
        type Service = EchoDest;
        fn new_destination(&self, dest: &Arc<Destination>) -> EchoDest {
            EchoDest(format!(
                "{}/{}",
                dest.key.service,
                dest.key.subset.as_deref().unwrap_or("-")
            ))
        }
    }

    impl<B> tower::Service<Request<B>> for EchoDest {
        type Response = Response<Body>;
        type Error = ProxyError;
        type Future = Ready<Result<Response<Body>, ProxyError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<B>) -> Self::Future {
            let mut rsp = Response::new(crate::http::empty_body());
            rsp.headers_mut()
                .insert("x-dest", self.0.parse().expect("test value"));
            ready(Ok(rsp))
        }
    }

    fn dispatch() -> Dispatch<Echo> {
        let msg: pb::ProxyConfig = serde_saphyr::from_str(
            r#"
services:
  - {name: reviews, port: 9080, addresses: ["10.0.0.1:9080"], subsets: [{name: v2, labels: {version: v2}}]}
  - {name: ratings, addresses: ["10.0.0.2:80"]}
"#,
        )
        .expect("test yaml");
        let config = Config::from_proto(msg).expect("valid");
        let services = Arc::new(Services::update(
            &Services::default(),
            &config,
            tokio::time::Instant::now(),
        ));
        let default = services
            .service("reviews:9080")
            .expect("reviews")
            .default
            .clone();
        Dispatch::new(services, default, Echo)
    }

    async fn dest_of(key: Option<(&str, Option<&str>)>) -> Result<String, ProxyError> {
        let mut req = Request::new(());
        if let Some((service, subset)) = key {
            req.extensions_mut().insert(DestinationKey {
                service: service.into(),
                subset: subset.map(Into::into),
            });
        }
        let rsp = dispatch().call(req).await?;
        Ok(rsp.headers()["x-dest"].to_str().expect("ascii").to_owned())
    }

    #[tokio::test]
    async fn a_request_without_a_destination_goes_to_the_connections_service() {
        assert_eq!(dest_of(None).await.unwrap(), "reviews:9080/-");
    }

    #[tokio::test]
    async fn a_routed_request_goes_to_the_named_service_or_subset() {
        assert_eq!(
            dest_of(Some(("reviews:9080", Some("v2")))).await.unwrap(),
            "reviews:9080/v2"
        );
        assert_eq!(dest_of(Some(("ratings", None))).await.unwrap(), "ratings/-");
    }

    #[tokio::test]
    async fn an_unknown_service_or_subset_is_503_no_route() {
        for key in [("reviews:9080", Some("v3")), ("nope", None)] {
            let err = dest_of(Some(key)).await.unwrap_err();
            assert_eq!(
                err.status_and_flag(),
                (http::StatusCode::SERVICE_UNAVAILABLE, "NR"),
                "{key:?}"
            );
        }
    }
}
