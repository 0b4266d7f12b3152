//! The targets, one module each. Each `check` returns the input's outcome (see [`outcome`]) and
//! panics when the code under test breaks a promise.

pub mod admission;
pub mod authz_path;
pub mod client_hello;
pub mod csr;
pub mod detect;
pub mod discovery;
pub mod h1_guard;
pub mod h1_guarded_io;
pub mod local_token;
pub mod mesh_tcp_header;
pub mod peer_header;
pub mod proxy_config;
pub mod registry_object;
pub mod registry_yaml;
pub mod request_head;
pub mod split;
pub mod trace_context;

/// An outcome label for `result`: "ok", or the error's message with the input's own values
/// blanked (quoted text, numbers) and cut short, so inputs differing only in a value share one.
pub fn outcome<T, E: std::fmt::Display>(what: &str, result: &Result<T, E>) -> String {
    match result {
        Ok(_) => format!("{what}: ok"),
        Err(e) => format!("{what}: {}", shape(&e.to_string())),
    }
}

/// `message` with quoted parts and digits blanked, cut after its third `: ` (where the
/// offending value usually follows unquoted: `field: reason: value`), at most 100 characters.
pub fn shape(message: &str) -> String {
    let message = message
        .splitn(4, ": ")
        .take(3)
        .collect::<Vec<_>>()
        .join(": ");
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            None if c.is_ascii_digit() => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            None => out.push(c),
        }
        if out.len() >= 100 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes_blank_values() {
        assert_eq!(
            super::shape("services[12].address: invalid \"abc:1\" at line 3"),
            "services[#].address: invalid \"\" at line #"
        );
    }
}
