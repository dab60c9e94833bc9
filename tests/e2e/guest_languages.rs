//! The chat example in AssemblyScript and C answers exactly like the Rust one: the same
//! script of messages (errors, Unicode trimming, name limits, JSON edge cases: number
//! forms, escapes, key normalisation, nesting limits, invalid UTF-8) through a real
//! register + gateway + worker, and every reply compared byte for byte with Rust's (the
//! `time` value and client ids, which differ between runs, are masked).

use crate::common::*;
use crate::guests::{example, LANGUAGES};
use crate::system::{next_text, System};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Masks what differs between two runs: the digits after `"time":` and the 20 hex digits
/// after `"client_id":"`.
fn mask(reply: &str) -> String {
    let mut out = reply.to_owned();
    if let Some(at) = out.find("\"time\":") {
        let start = at + "\"time\":".len();
        let end = out[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(out.len(), |n| start + n);
        assert!(end > start, "a time in {reply}");
        out.replace_range(start..end, "T");
    }
    if let Some(at) = out.find("\"client_id\":\"") {
        let start = at + "\"client_id\":\"".len();
        assert!(out.len() >= start + 20, "a client id in {reply}");
        out.replace_range(start..start + 20, "C");
    }
    out
}

/// The next text, or a marker when none comes within 2 s (so that a guest that stays silent
/// shows as a differing line, not as a hang).
async fn reply(ws: &mut WsClient) -> String {
    match tokio::time::timeout(std::time::Duration::from_secs(2), next_text(ws)).await {
        Ok(text) => mask(&text),
        Err(_) => "(no reply within 2 s)".into(),
    }
}

/// Runs the script against `module`; the replies, in order, each tagged with its client.
async fn script(lang: &str) -> Vec<String> {
    let sys = System::start(example("chat", lang), 1, 1, |_| {}).await;
    let mut ann = sys.client().await;
    let mut bob = sys.client().await;
    let mut log = Vec::new();
    async fn ask(log: &mut Vec<String>, who: &str, ws: &mut WsClient, text: &str) {
        ws_send_text(ws, text).await;
        log.push(format!("{who} < {text}"));
        log.push(format!("{who} > {}", reply(ws).await));
    }
    async fn hear(log: &mut Vec<String>, who: &str, ws: &mut WsClient) {
        log.push(format!("{who} > {}", reply(ws).await));
    }

    // Errors before login.
    for text in [
        "not json",
        "[1,2]",
        "{\"type\":7}",
        "{}",
        "{\"type\":\"say\",\"text\":\"x\"}",
        "{\"type\":\"list\"}",
        "{\"type\":\"whisper\",\"to\":\"bob\"}",
        "{\"type\":\"dance\"}",
        "{\"type\":\"login\",\"room\":\"lobby\",\"name\":\"0\"}",
        "{\"type\":\"login\",\"room\":\"lobby\",\"name\":\" \\u00a0\\u3000 \"}",
        "{\"type\":\"login\",\"room\":\"lobby\",\"name\":\"123456789012345678901234567890123\"}",
        "{\"type\":\"login\",\"room\":5,\"name\":\"ann\"}",
        "{\"type\":\"login\",\"room\":\"lobby\"}",
        "{\"type\":\"login\",\"room\":\"lobby\",\"name\":\"ann\"",
        "{\"type\":\"login\",\"room\":\"lobby\",\"name\":\"ann\"} x",
        "{\"type\":\"say\",\"text\":\"\\ud800\"}",
        "{\"type\":\"say\",\"text\":\"\\udc00\"}",
        "{\"type\":\"say\",\"text\":01}",
        "{\"type\":\"say\",\"text\":1.}",
        "{\"type\":\"say\",\"text\":\"tab\there\"}",
    ] {
        ask(&mut log, "ann", &mut ann, text).await;
    }
    // Invalid UTF-8 inside a JSON string (a binary message: text frames must be UTF-8).
    ann.send(Message::binary(
        b"{\"type\":\"say\",\"text\":\"\xff\"}".to_vec(),
    ))
    .await
    .unwrap();
    hear(&mut log, "ann", &mut ann).await;

    // Login with names trimmed of Unicode white space; 32 bytes is the longest name.
    ask(
        &mut log,
        "ann",
        &mut ann,
        "{\"type\":\"login\",\"room\":\"\\u3000lobby\\t\",\"name\":\" ann\\u2003\"}",
    )
    .await;
    ws_send_text(
        &mut bob,
        "{\"type\":\"login\",\"room\":\"lobby\",\"name\":\"b\u{f3}b \u{1F600}\"}",
    )
    .await;
    hear(&mut log, "ann", &mut ann).await;
    hear(&mut log, "bob", &mut bob).await;

    // Every JSON form a message may carry comes back as PHP's json_encode writes it.
    let texts = [
        "{\"b\":[1,-0,2.50,1e2,1E-7,0.1,-0.0,123456789012345,1.5e300,10000000000000000000,1e400,-1e400,1e-400,0.00001,1e16,1e17,-2.5e-5]}",
        "[\"\\u00e9\\ud83d\\ude00\\u2028\\u2029/\\/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\u{e9}\",true,false,null,{},[],[[]]]",
        "{\"7\":\"seven\",\"07\":\"x\",\"-3\":1,\"-0\":2,\"a\":1,\"a\":2,\"9223372036854775807\":1,\"9223372036854775808\":2,\"\":3}",
        "{\"0\":\"a\",\"1\":\"b\"}",
        "{\"1\":\"a\",\"0\":\"b\"}",
        "9223372036854775807",
        "-9223372036854775808",
        "-9223372036854775809",
        " \"spaces\" ",
    ];
    for text in texts {
        ws_send_text(&mut ann, &format!("{{\"type\":\"say\",\"text\":{text}}}")).await;
        log.push(format!("ann < say {text}"));
        hear(&mut log, "ann", &mut ann).await;
        hear(&mut log, "bob", &mut bob).await;
    }
    // No text at all: an empty string.
    ws_send_text(&mut bob, "{\"type\":\"say\"}").await;
    hear(&mut log, "ann", &mut ann).await;
    hear(&mut log, "bob", &mut bob).await;
    // Nesting: 64 levels in all are accepted, 65 are not JSON to the chat.
    for depth in [63, 64] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        ws_send_text(&mut ann, &format!("{{\"type\":\"say\",\"text\":{text}}}")).await;
        log.push(format!("ann < say nested {depth}"));
        hear(&mut log, "ann", &mut ann).await;
        if depth == 63 {
            hear(&mut log, "bob", &mut bob).await;
        }
    }
    // A long message (buffers grow).
    let long = "x\u{e9}\"".repeat(40_000);
    let long_json = serde_json::to_string(&long).unwrap();
    ws_send_text(
        &mut ann,
        &format!("{{\"type\":\"say\",\"text\":{long_json}}}"),
    )
    .await;
    log.push("ann < say long".into());
    hear(&mut log, "ann", &mut ann).await;
    hear(&mut log, "bob", &mut bob).await;

    // Whispers, members, moving to another room.
    ask(
        &mut log,
        "bob",
        &mut bob,
        "{\"type\":\"whisper\",\"to\":\" ann \",\"text\":[3]}",
    )
    .await;
    hear(&mut log, "ann", &mut ann).await;
    for text in [
        "{\"type\":\"whisper\",\"to\":\"nobody\",\"text\":\"?\"}",
        "{\"type\":\"whisper\",\"to\":\"\",\"text\":\"?\"}",
        "{\"type\":\"whisper\",\"to\":[\"ann\"]}",
        "{\"type\":\"list\"}",
    ] {
        ask(&mut log, "bob", &mut bob, text).await;
    }
    ask(
        &mut log,
        "bob",
        &mut bob,
        "{\"type\":\"login\",\"room\":\"den\",\"name\":\"bob2\"}",
    )
    .await;
    hear(&mut log, "ann", &mut ann).await;
    ask(&mut log, "ann", &mut ann, "{\"type\":\"list\"}").await;
    ask(&mut log, "bob", &mut bob, "{\"type\":\"list\"}").await;
    // Ann joins the den: bob sees her come, and her leaving the lobby tells nobody there.
    ask(
        &mut log,
        "ann",
        &mut ann,
        "{\"type\":\"login\",\"room\":\"den\",\"name\":\"ann\"}",
    )
    .await;
    hear(&mut log, "bob", &mut bob).await;
    // Bob leaves: ann is told.
    bob.close(None).await.unwrap();
    hear(&mut log, "ann", &mut ann).await;
    ask(&mut log, "ann", &mut ann, "{\"type\":\"list\"}").await;
    assert!(ws_silent(&mut ann, std::time::Duration::from_millis(50)).await);

    let stats = sys.worker().stats();
    assert_eq!(
        stats.iter().map(|s| s.events_failed).sum::<u64>(),
        0,
        "chat{lang}: no event failed"
    );
    sys.stop();
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_like_rust_in_every_language() {
    let rust = script(LANGUAGES[0].1).await;
    // The script itself is what Rust answers: spot checks that it exercises what it claims.
    let all = rust.join("\n");
    for want in [
        r#"ann > {"type":"error","reason":"messages are JSON objects"}"#,
        r#"ann > {"type":"error","reason":"unknown type"}"#,
        r#"ann > {"type":"error","reason":"login needs a room and a name (1-32 bytes, not \"0\")"}"#,
        r#"ann > {"type":"welcome","room":"lobby","name":"ann","members":["ann"]}"#,
        r#"[1,0,2.5,100,1.0e-7,0.1,-0,123456789012345,1.5e+300,1.0e+19,null,null,0,1.0e-5,10000000000000000,1.0e+17,-2.5e-5"#,
        r#""text":["é😀\u2028\u2029//\"\\\b\f\n\r\t\u0001\u001f"#,
        r#""text":["a","b"]"#,
        r#""text":{"1":"a","0":"b"}"#,
        r#"bob > {"type":"error","reason":"nobody is not online"}"#,
        r#"ann > {"type":"leave","room":"lobby","name":"bób 😀"}"#,
        r#"ann > {"type":"leave","room":"den","name":"bob2"}"#,
    ] {
        assert!(
            all.contains(want),
            "Rust's chat replies contain {want}:\n{all}"
        );
    }
    for (lang, suffix) in &LANGUAGES[1..] {
        let other = script(suffix).await;
        for (i, (r, o)) in rust.iter().zip(&other).enumerate() {
            assert_eq!(o, r, "chat{suffix} ({lang}) differs from Rust at line {i}");
        }
        assert_eq!(other.len(), rust.len(), "chat{suffix} ({lang})");
        eprintln!(
            "chat{suffix} ({lang}): {} lines equal to Rust's",
            other.len()
        );
    }
}
