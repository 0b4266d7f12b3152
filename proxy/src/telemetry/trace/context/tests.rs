use super::*;

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

const TP: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
const SPAN: u64 = 0x00f067aa0ba902b7;

fn parent(trace_id: u128, span_id: u64) -> Option<Parent> {
    Some(Parent {
        trace_id,
        span_id,
        short_trace_id: false,
    })
}

#[test]
fn a_valid_traceparent_gives_the_trace_the_parent_and_the_flag() {
    let inc = read(&headers(&[("traceparent", TP)]));
    assert_eq!(inc.parent, parent(TRACE, SPAN));
    assert_eq!(inc.decision, Some(Decision::Sampled));
    assert!(inc.w3c);

    let unsampled = read(&headers(&[(
        "traceparent",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]));
    assert_eq!(unsampled.decision, Some(Decision::NotSampled));
    // Other flag bits than `sampled` do not make it sampled.
    let other_bits = read(&headers(&[(
        "traceparent",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
    )]));
    assert_eq!(other_bits.decision, Some(Decision::NotSampled));
}

#[test]
fn malformed_traceparents_are_ignored() {
    let bad: &[&[u8]] = &[
        // all-zero trace id, all-zero parent id
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // uppercase hex
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        // version ff is forbidden; an uppercase or non-hex version is invalid
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // lengths: short ids, a long one, a trailing field in version 00, truncated
        b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        b"",
        b"-",
        // wrong separators, whitespace, signs that from_str_radix would take
        b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
        // bytes past ASCII
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\xff\xfe",
        b"\xc3\xa9\xc3\xa9-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // a future version whose extra data does not start with a dash
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    ];
    for v in bad {
        let inc = read(&headers(&[("traceparent", v)]));
        assert_eq!(
            inc,
            Incoming::default(),
            "{:?} was not ignored",
            String::from_utf8_lossy(v)
        );
    }
}

#[test]
fn a_future_version_is_read_for_its_first_four_fields() {
    for v in [
        &b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
        b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later",
    ] {
        let inc = read(&headers(&[("traceparent", v)]));
        assert_eq!(inc.parent, parent(TRACE, SPAN), "{v:?}");
        assert_eq!(inc.decision, Some(Decision::Sampled));
    }
}

#[test]
fn two_traceparent_headers_are_ignored() {
    let inc = read(&headers(&[("traceparent", TP), ("traceparent", TP)]));
    assert_eq!(inc.parent, None);
}

#[test]
fn b3_single_with_every_part() {
    let inc = read(&headers(&[(
        "b3",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    )]));
    assert_eq!(
        inc.parent,
        parent(0x80f198ee56343ba864fe8b2a57d3eff7, 0xe457b5a2e4d86bd1)
    );
    assert_eq!(inc.decision, Some(Decision::Sampled));
    assert!(inc.b3.single && !inc.b3.multi && !inc.w3c);
}

#[test]
fn b3_single_short_forms() {
    let ids_only = read(&headers(&[(
        "b3",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1",
    )]));
    assert!(ids_only.parent.is_some());
    assert_eq!(ids_only.decision, None, "no decision: ours to make");

    let short = read(&headers(&[("b3", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")]));
    assert_eq!(
        short.parent,
        Some(Parent {
            trace_id: 0x64fe8b2a57d3eff7,
            span_id: 0xe457b5a2e4d86bd1,
            short_trace_id: true
        })
    );
    assert_eq!(short.decision, Some(Decision::NotSampled));

    for (v, d) in [
        (&b"0"[..], Decision::NotSampled),
        (b"1", Decision::Sampled),
        (b"d", Decision::Debug),
    ] {
        let inc = read(&headers(&[("b3", v)]));
        assert_eq!(inc.parent, None);
        assert_eq!(inc.decision, Some(d));
    }
}

#[test]
fn malformed_b3_single_is_ignored() {
    let bad: &[&[u8]] = &[
        b"2",
        b"D",
        b"true",
        b"80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-bad",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-more",
        b"80f198ee56343ba864fe8b2a57d3eff7",
        b"80f198ee56343ba864fe8b2a57d3eff7-",
        b"80f198ee56343ba864fe8b2a57d3eff7--1",
        b"00000000000000000000000000000000-e457b5a2e4d86bd1-1",
        b"80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1",
        b"80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1-1",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd-1",
        b"-----",
        b"\xff",
        b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-\x80",
    ];
    for v in bad {
        let inc = read(&headers(&[("b3", v)]));
        assert_eq!(inc.parent, None, "{:?}", String::from_utf8_lossy(v));
        assert_eq!(inc.decision, None, "{:?}", String::from_utf8_lossy(v));
        assert!(inc.b3.single, "still written back in its form");
    }
}

#[test]
fn b3_multi_64_and_128_bit_ids() {
    let inc = read(&headers(&[
        ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", b"0020000000000001"),
        ("x-b3-sampled", b"1"),
    ]));
    assert_eq!(
        inc.parent,
        parent(0x463ac35c9f6413ad48485a3953bb6124, 0xa2fb4a1d1a96d312)
    );
    assert_eq!(inc.decision, Some(Decision::Sampled));
    assert!(inc.b3.multi && !inc.b3.single);

    let short = read(&headers(&[
        ("x-b3-traceid", b"48485a3953bb6124"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ("x-b3-sampled", b"0"),
    ]));
    assert_eq!(short.parent.map(|p| p.short_trace_id), Some(true));
    assert_eq!(short.parent.map(|p| p.trace_id), Some(0x48485a3953bb6124));
    assert_eq!(short.decision, Some(Decision::NotSampled));
}

#[test]
fn b3_multi_flags_one_is_debug_and_a_lone_decision_counts() {
    let debug = read(&headers(&[
        ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ("x-b3-flags", b"1"),
        ("x-b3-sampled", b"0"),
    ]));
    assert_eq!(debug.decision, Some(Decision::Debug));

    let alone = read(&headers(&[("x-b3-sampled", b"0")]));
    assert_eq!(alone.parent, None);
    assert_eq!(alone.decision, Some(Decision::NotSampled));
    let old_style = read(&headers(&[("x-b3-sampled", b"true")]));
    assert_eq!(old_style.decision, Some(Decision::Sampled));
}

#[test]
fn malformed_b3_multi_is_ignored() {
    let cases: &[&[(&str, &[u8])]] = &[
        // span id missing, trace id missing
        &[
            ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-sampled", b"1"),
        ],
        &[("x-b3-spanid", b"a2fb4a1d1a96d312"), ("x-b3-sampled", b"1")],
        // bad lengths, uppercase, zero
        &[
            ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb612"),
            ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ],
        &[
            ("x-b3-traceid", b"463AC35C9F6413AD48485A3953BB6124"),
            ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ],
        &[
            ("x-b3-traceid", b"0000000000000000"),
            ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ],
        &[
            ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", b"a2fb4a1d1a96d312"),
            ("x-b3-parentspanid", b"zz"),
        ],
        // a decision that is none of 0/1/true/false
        &[
            ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", b"a2fb4a1d1a96d312"),
            ("x-b3-sampled", b"yes"),
        ],
        &[("x-b3-sampled", b"\xff")],
        // a header given twice
        &[
            ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ],
        &[("x-b3-sampled", b"1"), ("x-b3-sampled", b"0")],
    ];
    for case in cases {
        let inc = read(&headers(case));
        assert_eq!(inc.parent, None, "{case:?}");
        assert_eq!(inc.decision, None, "{case:?}");
    }
}

#[test]
fn w3c_wins_over_b3_single_which_wins_over_b3_multi() {
    let all = headers(&[
        ("traceparent", TP),
        ("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"),
        ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
    ]);
    let inc = read(&all);
    assert_eq!(inc.parent, parent(TRACE, SPAN));
    assert!(inc.w3c && inc.b3.single && inc.b3.multi);

    let b3s = headers(&[
        ("traceparent", b"garbage"),
        ("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"),
        ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
    ]);
    assert_eq!(
        read(&b3s).parent,
        parent(0x80f198ee56343ba864fe8b2a57d3eff7, 0xe457b5a2e4d86bd1)
    );

    let multi = headers(&[
        ("b3", b"garbage"),
        ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
    ]);
    assert_eq!(
        read(&multi).parent,
        parent(0x463ac35c9f6413ad48485a3953bb6124, 0xa2fb4a1d1a96d312)
    );
}

#[test]
fn no_headers_no_context() {
    assert_eq!(read(&HeaderMap::new()), Incoming::default());
}

fn out(decision: Decision) -> Outgoing {
    Outgoing {
        trace_id: TRACE,
        span_id: 0x1111222233334444,
        parent_span_id: Some(SPAN),
        decision,
        short_trace_id: false,
    }
}

#[test]
fn w3c_is_always_written_and_tracestate_passes_with_its_context() {
    let mut h = headers(&[
        ("traceparent", TP),
        ("tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    ]);
    let inc = read(&h);
    write(&mut h, &inc, &out(Decision::Sampled));
    assert_eq!(
        h["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-1111222233334444-01"
    );
    assert_eq!(h["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    assert!(!h.contains_key("b3") && !h.contains_key("x-b3-traceid"));

    // A tracestate without a valid traceparent belongs to no trace we continue.
    let mut h = headers(&[
        ("traceparent", b"bad"),
        ("tracestate", b"congo=t61rcWkgMzE"),
    ]);
    let inc = read(&h);
    write(&mut h, &inc, &out(Decision::NotSampled));
    assert!(!h.contains_key("tracestate"));
    assert_eq!(
        h["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-1111222233334444-00"
    );
}

#[test]
fn b3_is_written_back_in_the_forms_it_came_in() {
    let mut h = headers(&[
        ("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ("x-b3-sampled", b"1"),
    ]);
    let inc = read(&h);
    write(&mut h, &inc, &out(Decision::Sampled));
    assert_eq!(
        h["b3"],
        "4bf92f3577b34da6a3ce929d0e0e4736-1111222233334444-1-00f067aa0ba902b7"
    );
    assert_eq!(h["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(h["x-b3-spanid"], "1111222233334444");
    assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
    assert_eq!(h["x-b3-sampled"], "1");
    assert!(h.contains_key("traceparent"));
}

#[test]
fn b3_debug_and_short_ids_are_written_as_b3_expects() {
    let mut h = headers(&[("x-b3-flags", b"1"), ("x-b3-sampled", b"1"), ("b3", b"d")]);
    let inc = read(&h);
    let mut o = out(Decision::Debug);
    o.parent_span_id = None;
    o.trace_id = 0x48485a3953bb6124;
    o.short_trace_id = true;
    write(&mut h, &inc, &o);
    assert_eq!(h["x-b3-flags"], "1");
    assert!(!h.contains_key("x-b3-sampled"), "debug implies sampled");
    assert!(!h.contains_key("x-b3-parentspanid"));
    assert_eq!(h["x-b3-traceid"], "48485a3953bb6124");
    assert_eq!(h["b3"], "48485a3953bb6124-1111222233334444-d");
    // W3C has no short ids: zero-padded to 32 digits.
    assert_eq!(
        h["traceparent"],
        "00-000000000000000048485a3953bb6124-1111222233334444-01"
    );
}

fn kept_or_new_request_id(h: &mut HeaderMap) -> http::HeaderValue {
    let incoming = read(h);
    request_id(h, &incoming)
}

#[test]
fn a_sane_request_id_is_kept() {
    let mut h = headers(&[("x-request-id", b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6")]);
    assert_eq!(
        kept_or_new_request_id(&mut h),
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    );
    assert_eq!(h["x-request-id"], "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    let long = vec![b'a'; MAX_REQUEST_ID_LEN];
    let mut h = headers(&[("x-request-id", &long)]);
    assert_eq!(kept_or_new_request_id(&mut h).as_bytes(), &long[..]);
}

fn is_uuid_v4(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            14 => *b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b'),
            _ => b.is_ascii_hexdigit() && !b.is_ascii_uppercase(),
        })
}

#[test]
fn a_missing_or_insane_request_id_is_replaced_by_a_uuid() {
    let too_long = vec![b'a'; MAX_REQUEST_ID_LEN + 1];
    let cases: &[&[(&str, &[u8])]] = &[
        &[],
        &[("x-request-id", b"")],
        &[("x-request-id", b"has space")],
        &[("x-request-id", b"tab\there")],
        &[("x-request-id", b"\xff\xfe")],
        &[("x-request-id", b"caf\xc3\xa9")],
        &[("x-request-id", &too_long)],
        &[("x-request-id", b"one"), ("x-request-id", b"two")],
    ];
    for case in cases {
        let mut h = headers(case);
        let id = kept_or_new_request_id(&mut h);
        assert!(is_uuid_v4(id.as_bytes()), "{case:?} -> {id:?}");
        assert_eq!(h.get_all("x-request-id").iter().count(), 1);
        assert_eq!(h["x-request-id"], id);
    }
}

#[test]
fn uuid_v4_sets_the_version_and_variant_bits() {
    assert_eq!(&uuid_v4(0), b"00000000-0000-4000-8000-000000000000");
    assert_eq!(&uuid_v4(u128::MAX), b"ffffffff-ffff-4fff-bfff-ffffffffffff");
    for _ in 0..100 {
        assert!(is_uuid_v4(&uuid_v4(fastrand::u128(..))));
    }
}

#[test]
fn the_one_pass_scan_finds_what_lookups_by_name_find() {
    let names = [
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "x-request-id",
    ];
    // Every subset, among unrelated headers (standard and custom, some with near names).
    for subset in 0u32..1 << names.len() {
        let mut h = headers(&[
            ("user-agent", b"curl/8"),
            ("x-b3", b"1"),
            ("traceparents", b"1"),
            ("x-request-i", b"1"),
        ]);
        for (i, name) in names.iter().enumerate() {
            if subset & (1 << i) != 0 {
                h.append(*name, http::HeaderValue::from_static("v"));
            }
        }
        let p = scan(&h);
        let has = |n: &str| h.contains_key(n);
        assert_eq!(p.traceparent, has("traceparent"), "{subset:b}");
        assert_eq!(p.tracestate, has("tracestate"), "{subset:b}");
        assert_eq!(p.b3.single, has("b3"), "{subset:b}");
        assert_eq!(
            p.b3.multi,
            ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"]
                .iter()
                .any(|n| has(n)),
            "{subset:b}"
        );
        assert_eq!(p.request_id, has("x-request-id"), "{subset:b}");
    }
}

#[test]
fn hex_digits_are_lowercase_and_zero_padded() {
    let mut out = [0u8; 32];
    put_hex(&mut out, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    assert_eq!(&out, b"0123456789abcdeffedcba9876543210");
    let mut out = [0u8; 16];
    put_hex(&mut out, 0xab);
    assert_eq!(&out, b"00000000000000ab");
    let mut out = [0u8; 2];
    put_hex(&mut out, 1);
    assert_eq!(&out, b"01");
}
