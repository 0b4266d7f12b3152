//! Prometheus' text exposition format (and the OpenMetrics text a `prometheus-client` registry
//! writes), as far as reading samples needs: `name{label="value",…} value [timestamp] [# exemplar]`.
//!
//! Promises: any input, however malformed or hostile, is read without a panic; a line that is not
//! a sample is counted in [`Parsed::malformed`] and skipped, never guessed at; label values are
//! unescaped as the format defines (`\\`, `\"`, `\n`); only the families a caller keeps are
//! stored, so a proxy with many unrelated series costs no memory here.

/// One sample: a series (name and labels, sorted by label name) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

// === impl Sample ===

impl Sample {
    /// The value of label `name`, `""` when absent (as PromQL treats a missing label).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    /// Lines that were neither a comment, blank, nor a sample.
    pub malformed: usize,
}

/// The samples of `text` whose metric name `keep` accepts.
pub fn parse(text: &str, keep: impl Fn(&str) -> bool) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match sample(line, &keep) {
            Ok(Some(s)) => out.samples.push(s),
            Ok(None) => {}
            Err(()) => out.malformed += 1,
        }
    }
    out
}

/// One sample line: `Ok(None)` when its family is not kept (its labels are not even read).
fn sample(line: &str, keep: &impl Fn(&str) -> bool) -> Result<Option<Sample>, ()> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0, true))
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err(());
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if !keep(name) {
        return Ok(None);
    }
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = read_labels(after, &mut labels)?;
    }
    // A separator, the value, then an optional timestamp and exemplar we do not need.
    if !rest.starts_with([' ', '\t']) {
        return Err(());
    }
    let value = rest.split_whitespace().next().ok_or(())?;
    let value = parse_value(value)?;
    labels.sort();
    Ok(Some(Sample {
        name: name.to_string(),
        labels,
        value,
    }))
}

/// Reads `label="value",…}` into `labels`; returns what follows the closing brace.
fn read_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, ()> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let end = s
            .char_indices()
            .find(|&(i, c)| !is_name_char(c, i == 0, false))
            .map_or(s.len(), |(i, _)| i);
        if end == 0 {
            return Err(());
        }
        let key = &s[..end];
        s = s[end..].trim_start().strip_prefix('=').ok_or(())?;
        s = s.trim_start().strip_prefix('"').ok_or(())?;
        let (value, after) = read_quoted(s)?;
        labels.push((key.to_string(), value));
        s = after.trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(());
        }
    }
}

/// A label value up to its closing quote, unescaped; and what follows the quote.
fn read_quoted(s: &str) -> Result<(String, &str), ()> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                // Not an escape the format defines: kept as written.
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return Err(()),
            },
            c => value.push(c),
        }
    }
    Err(())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; label names have no `:`.
fn is_name_char(c: char, first: bool, colon: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(s: &str) -> Result<f64, ()> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        // Rust would also take `infinity` and `nan` in any case; the format does not.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) =>
        {
            Err(())
        }
        _ => s.parse().map_err(|_| ()),
    }
}

#[cfg(test)]
mod tests;
