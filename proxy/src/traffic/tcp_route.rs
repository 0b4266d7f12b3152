//! TCP routes (VirtualService `tcp[]`): which destination an opaque TCP connection goes to.
//!
//! Promise: [`TcpRoutes::from_proto`] returns routes whose weights are usable, or names the
//! field that is not. The control plane has already resolved each route's match (port, source
//! labels) for this proxy, so the first route applies to every connection; no routes means the
//! connection's own service. A weighted pick costs one random number and no allocation.

use super::DestinationKey;
use crate::config::{ConfigError, invalid};
use sinew_proto::config::v1 as pb;
use std::sync::Arc;

/// A service's validated TCP routes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TcpRoutes {
    /// The first route's destinations with their weights (zero weights dropped), if any.
    destinations: Box<[(DestinationKey, u32)]>,
    total: u32,
}

// === impl TcpRoutes ===

impl TcpRoutes {
    /// Validates `routes` (at `field`, e.g. `services[0].tcpRoutes`) of the service whose key
    /// is `service` (where destinations naming no service go).
    pub fn from_proto(
        field: &str,
        service: &Arc<str>,
        routes: &[pb::TcpRoute],
    ) -> Result<Self, ConfigError> {
        let mut first = None;
        for (i, r) in routes.iter().enumerate() {
            let f = format!("{field}[{i}].destinations");
            if r.destinations.is_empty() {
                return Err(invalid(f, "at least one destination is required"));
            }
            let single = r.destinations.len() == 1;
            let mut list = Vec::with_capacity(r.destinations.len());
            let mut total: u32 = 0;
            for d in &r.destinations {
                // One destination with no weight takes everything, as in Istio.
                let weight = if single && d.weight == 0 {
                    100
                } else {
                    d.weight
                };
                total = total
                    .checked_add(weight)
                    .ok_or_else(|| invalid(&f, "weights add up to more than 2^32"))?;
                if weight == 0 {
                    continue;
                }
                let key = DestinationKey {
                    service: if d.service.is_empty() {
                        service.clone()
                    } else {
                        Arc::from(d.service.as_str())
                    },
                    subset: (!d.subset.is_empty()).then(|| Arc::from(d.subset.as_str())),
                };
                list.push((key, weight));
            }
            if total == 0 {
                return Err(invalid(f, "weights add up to 0"));
            }
            if first.is_none() {
                first = Some((list.into_boxed_slice(), total));
            }
        }
        Ok(match first {
            Some((destinations, total)) => Self {
                destinations,
                total,
            },
            None => Self::default(),
        })
    }

    /// The destination of one connection; `None` without routes (the connection's service).
    pub fn pick(&self) -> Option<&DestinationKey> {
        self.pick_at(fastrand::u32(0..self.total.max(1)))
    }

    fn pick_at(&self, mut n: u32) -> Option<&DestinationKey> {
        for (key, weight) in self.destinations.iter() {
            if n < *weight {
                return Some(key);
            }
            n -= weight;
        }
        self.destinations.last().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(service: &str, subset: &str, weight: u32) -> pb::RouteDestination {
        pb::RouteDestination {
            service: service.into(),
            subset: subset.into(),
            weight,
            ..Default::default()
        }
    }

    fn routes(ds: Vec<pb::RouteDestination>) -> Result<TcpRoutes, ConfigError> {
        TcpRoutes::from_proto(
            "services[0].tcpRoutes",
            &Arc::from("db:5432"),
            &[pb::TcpRoute { destinations: ds }],
        )
    }

    #[test]
    fn no_routes_send_connections_to_their_own_service() {
        let r = TcpRoutes::from_proto("f", &Arc::from("db:5432"), &[]).unwrap();
        assert_eq!(r.pick(), None);
    }

    #[test]
    fn weights_split_connections_by_their_share() {
        let r = routes(vec![dest("", "v1", 80), dest("", "v2", 20)]).unwrap();
        let subset = |n| r.pick_at(n).and_then(|k| k.subset.as_deref());
        assert_eq!(subset(0), Some("v1"));
        assert_eq!(subset(79), Some("v1"));
        assert_eq!(subset(80), Some("v2"));
        assert_eq!(subset(99), Some("v2"));
        let v2 = (0..10_000)
            .filter(|_| r.pick().and_then(|k| k.subset.as_deref()) == Some("v2"))
            .count();
        // Expected 2000; 1700 and 2300 are more than seven standard deviations away.
        assert!((1700..2300).contains(&v2), "{v2}");
    }

    #[test]
    fn a_single_destination_without_weight_takes_everything_and_names_its_service() {
        let r = routes(vec![dest("other:80", "", 0)]).unwrap();
        assert_eq!(r.pick().map(|k| &*k.service), Some("other:80"));
        let r = routes(vec![dest("", "", 0)]).unwrap();
        assert_eq!(r.pick().map(|k| &*k.service), Some("db:5432"));
    }

    #[test]
    fn bad_weights_name_the_field() {
        let e = routes(vec![dest("", "v1", 0), dest("", "v2", 0)]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("services[0].tcpRoutes[0].destinations"),
            "{e}"
        );
        let e = routes(vec![]).unwrap_err();
        assert!(e.to_string().contains("at least one"), "{e}");
    }
}
