use super::*;
use crate::traffic::test_util::{chan_body, collect, data};
use http_body_util::{BodyExt, Full};
use tokio_test::{assert_pending, assert_ready};

fn frame_data(f: Option<Result<Frame<Bytes>, BoxError>>) -> Bytes {
    f.expect("a frame")
        .expect("not an error")
        .into_data()
        .expect("a data frame")
}

#[tokio::test]
async fn first_reader_streams_before_the_body_is_complete() {
    let (tx, body) = chan_body();
    let mut first = ReplayBody::new(body, MAX_REPLAY_BYTES);
    tx.send(data("hello")).unwrap();
    // The client has not finished: the first chunk still goes out at once.
    assert_eq!(frame_data(first.frame().await), "hello");
    let mut next = tokio_test::task::spawn(first.frame());
    assert_pending!(next.poll());
}

#[tokio::test]
async fn a_replay_sends_the_buffered_part_then_reads_on_from_the_client() {
    let (tx, body) = chan_body();
    let handle = ReplayBody::new(body, MAX_REPLAY_BYTES);
    let mut first = handle.replay().unwrap();
    tx.send(data("ab")).unwrap();
    assert_eq!(frame_data(first.frame().await), "ab");
    drop(first);
    let second = handle.replay().unwrap();
    tx.send(data("cd")).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    tx.send(Ok(Frame::trailers(trailers))).unwrap();
    drop(tx);
    let collected = second.collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "abcd");
    // And a third try gets the whole body from the buffer alone.
    let third = handle.replay().unwrap();
    assert_eq!(collect(third).await.unwrap(), "abcd");
}

#[tokio::test]
async fn a_body_that_outgrows_the_limit_keeps_streaming_but_cannot_be_replayed() {
    let (tx, body) = chan_body();
    let handle = ReplayBody::new(body, 4);
    let first = handle.replay().unwrap();
    tx.send(data("abc")).unwrap();
    tx.send(data("def")).unwrap();
    drop(tx);
    assert!(handle.can_replay(), "nothing read yet");
    assert_eq!(collect(first).await.unwrap(), "abcdef");
    assert!(!handle.can_replay());
    assert!(handle.replay().is_none());
}

#[tokio::test]
async fn a_reader_left_behind_by_an_overflow_fails_instead_of_truncating() {
    let (tx, body) = chan_body();
    let handle = ReplayBody::new(body, 4);
    let mut first = handle.replay().unwrap();
    let behind = handle.replay().unwrap();
    tx.send(data("abcdef")).unwrap();
    drop(tx);
    assert_eq!(frame_data(first.frame().await), "abcdef");
    let err = collect(behind).await.unwrap_err();
    assert!(err.is::<NotReplayable>(), "{err}");
}

#[test]
fn a_body_known_to_be_too_large_is_never_buffered() {
    let big = Full::new(Bytes::from(vec![0u8; MAX_REPLAY_BYTES + 1]));
    let body = ReplayBody::new(big, MAX_REPLAY_BYTES);
    assert!(!body.can_replay());
    assert!(body.replay().is_none());
    let small = ReplayBody::new(Full::new(Bytes::from_static(b"x")), MAX_REPLAY_BYTES);
    assert!(small.fits(MAX_REPLAY_BYTES));
    assert!(!small.fits(MAX_REPLAY_BYTES + 1));
}

#[test]
fn empty_and_unbuffered_bodies() {
    let empty = ReplayBody::new(Full::new(Bytes::new()), MAX_REPLAY_BYTES);
    assert!(empty.is_end_stream());
    assert!(empty.replay().is_some_and(|r| r.is_end_stream()));
    let direct = ReplayBody::new(Full::new(Bytes::from_static(b"x")), 0);
    assert!(!direct.can_replay());
    assert_eq!(direct.size_hint().exact(), Some(1));
}

#[tokio::test]
async fn a_mirror_reads_only_what_the_main_request_pulled() {
    let (tx, body) = chan_body();
    let mut main = ReplayBody::new(body, MAX_REPLAY_BYTES);
    let mirror = main.mirror().unwrap();
    let mut mirror_read = tokio_test::task::spawn(collect(mirror));
    tx.send(data("xy")).unwrap();
    // The mirror does not pull the client's body while the main request can.
    assert_pending!(mirror_read.poll());
    assert_eq!(frame_data(main.frame().await), "xy");
    assert!(mirror_read.is_woken());
    assert_pending!(mirror_read.poll());
    drop(tx);
    assert!(main.frame().await.is_none());
    assert_eq!(assert_ready!(mirror_read.poll()).unwrap(), "xy");
}

#[tokio::test]
async fn a_mirror_reads_on_by_itself_once_the_main_request_dropped_its_body() {
    let (tx, body) = chan_body();
    let main = ReplayBody::new(body, MAX_REPLAY_BYTES);
    let mirror = main.mirror().unwrap();
    let mut mirror_read = tokio_test::task::spawn(collect(mirror));
    assert_pending!(mirror_read.poll());
    drop(main);
    assert!(mirror_read.is_woken());
    tx.send(data("z")).unwrap();
    drop(tx);
    assert_eq!(assert_ready!(mirror_read.poll()).unwrap(), "z");
}
