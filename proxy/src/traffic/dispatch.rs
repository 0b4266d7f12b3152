//! The destination dispatch: resolves a route's destination (a service, or one of its subsets)
//! to that destination's stack (breaker → balancer → endpoint), once per config version.
//!
//! Promises: a key naming a service or subset this proxy does not know answers `503 NR` (what
//! Istio users see for a VirtualService naming a subset no DestinationRule defines), never
//! another destination. Resolution happens when the stacks are built, from one [`Services`]
//! snapshot, so a request runs against the config it started with and pays no lookup.

use super::DestinationKey;
use super::cache::{Destination, Services};
use super::route::Target;
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

/// One destination's stack, or the `503 NR` answer for a destination the proxy does not know.
#[derive(Clone)]
pub enum Dispatch<S> {
    Known(S),
    Unknown(Arc<str>),
}

/// What the router needs to reach `key`: its stack, its retry limits, and whether a retry could
/// go to another endpoint.
pub fn target<B, N>(
    services: &Services,
    key: &DestinationKey,
    new: &N,
) -> Target<Dispatch<N::Service>>
where
    N: NewDestination<B>,
{
    match services.destination(key) {
        Some(dest) => Target {
            service: Dispatch::Known(new.new_destination(dest)),
            budget: dest.retry_budget.clone(),
            several_endpoints: dest.endpoints().len() > 1,
        },
        None => Target {
            service: Dispatch::Unknown(Arc::from(match &key.subset {
                Some(s) => format!("{} subset {s} is not a known destination", key.service),
                None => format!("{} is not a known destination", key.service),
            })),
            budget: Default::default(),
            several_endpoints: false,
        },
    }
}

// === impl Dispatch ===

impl<B, S> tower::Service<Request<B>> for Dispatch<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<Ready<Result<Response<Body>, ProxyError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        match self {
            Self::Known(s) => s.poll_ready(cx),
            Self::Unknown(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self {
            Self::Known(s) => Either::Right(s.call(req)),
            Self::Unknown(why) => {
                Either::Left(ready(Err(ProxyError::UnknownDestination(why.to_string()))))
            }
        }
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

    fn services() -> Services {
        let msg: pb::ProxyConfig = serde_saphyr::from_str(
            r#"
services:
  - {name: reviews, port: 9080, addresses: ["10.0.0.1:9080"], subsets: [{name: v2, labels: {version: v2}}]}
  - {name: ratings, addresses: ["10.0.0.2:80"]}
"#,
        )
        .expect("test yaml");
        let config = Config::from_proto(msg).expect("valid");
        Services::update(&Services::default(), &config, tokio::time::Instant::now())
    }

    fn target_of(service: &str, subset: Option<&str>) -> Target<Dispatch<EchoDest>> {
        let key = DestinationKey {
            service: service.into(),
            subset: subset.map(Into::into),
        };
        target::<(), _>(&services(), &key, &Echo)
    }

    async fn dest_of(service: &str, subset: Option<&str>) -> Result<String, ProxyError> {
        let rsp = target_of(service, subset)
            .service
            .call(Request::new(()))
            .await?;
        Ok(rsp.headers()["x-dest"].to_str().expect("ascii").to_owned())
    }

    #[tokio::test]
    async fn the_services_own_destination_is_its_default() {
        assert_eq!(
            dest_of("reviews:9080", None).await.unwrap(),
            "reviews:9080/-"
        );
    }

    #[tokio::test]
    async fn a_routed_request_goes_to_the_named_service_or_subset() {
        assert_eq!(
            dest_of("reviews:9080", Some("v2")).await.unwrap(),
            "reviews:9080/v2"
        );
        assert_eq!(dest_of("ratings", None).await.unwrap(), "ratings/-");
    }

    #[tokio::test]
    async fn an_unknown_service_or_subset_is_503_no_route() {
        for key in [("reviews:9080", Some("v3")), ("nope", None)] {
            let target = target_of(key.0, key.1);
            assert!(!target.several_endpoints);
            let err = dest_of(key.0, key.1).await.unwrap_err();
            assert_eq!(
                err.status_and_flag(),
                (http::StatusCode::SERVICE_UNAVAILABLE, "NR"),
                "{key:?}"
            );
        }
    }
}
