//! A discovery response as the proxy receives it from the control plane: protobuf bytes
//! decoded into `DiscoveryResponse`, merged with the bootstrap config and validated
//! (`control::discovery::prepare`, which decides between ACK and NACK). An input starting with
//! `{` is read as the message's protobuf JSON instead, so seeds stay readable and mutations
//! reach the validation more often than random protobuf bytes would.
//!
//! Contract checked:
//! - never panics, whatever the bytes;
//! - protobuf input that decodes re-encodes to a message that decodes the same;
//! - a response that is accepted is accepted again when sent a second time (the control plane
//!   resends after a reconnect), with the same services.

use prost::Message;
use sinew_proto::config::v1 as cfg;
use sinew_proto::discovery::v1 as pb;
use sinew_proxy::control::discovery::prepare;
use std::collections::BTreeMap;

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let rsp = if data.first() == Some(&b'{') {
        match serde_json::from_slice::<pb::DiscoveryResponse>(data) {
            Ok(rsp) => rsp,
            Err(e) => return format!("json: {}", super::shape(&e.to_string())),
        }
    } else {
        match pb::DiscoveryResponse::decode(data) {
            Ok(rsp) => {
                let again = pb::DiscoveryResponse::decode(&rsp.encode_to_vec()[..])
                    .expect("a re-encoded message decodes");
                assert_eq!(again, rsp, "protobuf round trip");
                rsp
            }
            Err(e) => return format!("protobuf: {}", super::shape(&e.to_string())),
        }
    };
    let base = cfg::ProxyConfig::default();
    let first = prepare(&base, &BTreeMap::new(), rsp.clone());
    if let Ok((config, held, _)) = &first {
        let (again, _, _) = prepare(&base, held, rsp)
            .unwrap_or_else(|e| panic!("accepted once, refused when resent: {e}"));
        assert_eq!(
            again.services().count(),
            config.services().count(),
            "resending changed the services"
        );
    }
    super::outcome("prepare", &first)
}
