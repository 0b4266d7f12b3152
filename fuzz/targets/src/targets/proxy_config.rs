//! The proxy's bootstrap config, from both of its sources: a YAML (or JSON) file
//! (`Config::from_yaml`, what `--config FILE` reads) and the JSON of env `SINEW_PROXY_CONFIG`
//! (`bootstrap::from_json`, what the injector gives a sidecar).
//!
//! Contract checked:
//! - never panics, whatever the bytes (non-UTF-8 is refused before parsing, as `read_to_string`
//!   and `OsStr::to_str` do);
//! - a config either source accepts round-trips: its message, written as protobuf JSON, is
//!   accepted by `from_json` again with the same message (so `/config_dump` output is a valid
//!   bootstrap).

use sinew_proxy::config::{Config, bootstrap};
use std::path::Path;

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    let yaml = Config::from_yaml(Path::new("fuzz.yaml"), text);
    let json = bootstrap::from_json(text);
    for config in [yaml.as_ref().ok(), json.as_ref().ok()]
        .into_iter()
        .flatten()
    {
        round_trips(config);
    }
    format!(
        "{} / {}",
        super::outcome("yaml", &yaml),
        super::outcome("json", &json)
    )
}

fn round_trips(config: &Config) {
    let json = serde_json::to_string(&config.source).expect("a message serialises");
    match bootstrap::from_json(&json) {
        Ok(again) => assert_eq!(
            again.source, config.source,
            "round trip changed the message"
        ),
        Err(e) => panic!("an accepted config is refused as JSON: {e}\n{json}"),
    }
}
