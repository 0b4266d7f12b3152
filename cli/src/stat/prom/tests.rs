use super::*;

fn all(text: &str) -> Parsed {
    parse(text, |_| true)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn reads_names_sorted_labels_and_values() {
    let p = all("# HELP istio_requests_total Requests.\n\
         # TYPE istio_requests_total counter\n\
         istio_requests_total{reporter=\"source\",response_code=\"200\"} 42\n\
         up 1 1700000000000\n\
         \n\
         istio_request_duration_milliseconds_bucket{le=\"+Inf\",a=\"b\"} 7 # {trace_id=\"x\"} 1.5\n");
    assert_eq!(p.malformed, 0);
    assert_eq!(
        p.samples,
        [
            Sample {
                name: "istio_requests_total".into(),
                labels: labels(&[("reporter", "source"), ("response_code", "200")]),
                value: 42.0,
            },
            Sample {
                name: "up".into(),
                labels: vec![],
                value: 1.0
            },
            Sample {
                name: "istio_request_duration_milliseconds_bucket".into(),
                labels: labels(&[("a", "b"), ("le", "+Inf")]),
                value: 7.0,
            },
        ]
    );
    assert_eq!(p.samples[0].label("reporter"), "source");
    assert_eq!(p.samples[0].label("missing"), "");
}

#[test]
fn unescapes_label_values_and_keeps_separators_inside_quotes() {
    let p = all(r#"m{path="a\"b\\c\nd",odd="x\ty",brace="}{, =",} 1"#);
    assert_eq!(p.malformed, 0);
    assert_eq!(
        p.samples[0].labels,
        labels(&[("brace", "}{, ="), ("odd", "x\\ty"), ("path", "a\"b\\c\nd")])
    );
}

#[test]
fn reads_special_and_exponent_values() {
    let p = all("a +Inf\nb -Inf\nc NaN\nd 1.5e3\ne -0.25\nf Inf\n");
    let v: Vec<f64> = p.samples.iter().map(|s| s.value).collect();
    assert_eq!(v[0], f64::INFINITY);
    assert_eq!(v[1], f64::NEG_INFINITY);
    assert!(v[2].is_nan());
    assert_eq!(&v[3..], [1500.0, -0.25, f64::INFINITY]);
}

#[test]
fn malformed_lines_are_counted_and_skipped_never_guessed() {
    let hostile = [
        "m{a=\"unterminated} 1",
        "m{a=\"x\" b=\"y\"} 1",
        "m{=\"x\"} 1",
        "m{a=x} 1",
        "m{a=\"x\"}1",
        "m",
        "m ",
        "m one",
        "m infinity",
        "m nan",
        "9m 1",
        "{a=\"b\"} 1",
        "m{a=\"x\\",
        "m{a=\"\u{1F600}\"",
    ];
    let text = hostile.join("\n") + "\nok{a=\"\u{1F600}\"} 3\n";
    let p = all(&text);
    assert_eq!(p.malformed, hostile.len(), "{:?}", p.samples);
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.samples[0].label("a"), "\u{1F600}");
}

#[test]
fn keeps_only_the_families_asked_for() {
    let p = parse("keep{a=\"1\"} 1\ndrop{a=\"2\"} 2\ndrop{broken 3\n", |n| {
        n == "keep"
    });
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.malformed, 0, "an unwanted family's labels are not read");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Every prefix of a tricky line, and lossily decoded junk.
    let line = "m{a=\"x\\\"y\",b=\"\\\\\",c=\"\\n\"} 1e308 123 # {t=\"1\"} 2";
    for end in 0..=line.len() {
        if line.is_char_boundary(end) {
            let _ = all(&line[..end]);
        }
    }
    let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let _ = all(&String::from_utf8_lossy(&junk));
}
