//! Media negotiation over the websocket with bad and good SDP: every bad offer gets its documented code, the
//! connection and the room carry on, and a well-formed audio offer gets an ICE-lite answer from the SFU.

use podium_hub::Role;
use serde_json::json;

use crate::support::TestHub;

/// A well-formed browser-style offer: one audio m-line offering Opus, sendrecv.
pub(crate) fn audio_offer() -> String {
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Xq3b",
        "a=ice-pwd:2oMiFl3mR3vVqJ3yQ9hK7dZs",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 \
         5C:4E:2B:0C:9D:93:1A:61:3F:51:8B:A6:EA:2E:8C:70:42:AF:4C:58:F4:0B:2D:0A:3C:1B:77:6E:84:52:AA:19",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=msid:- 7a1c2f9e-4bb2-4a8e-9f0e-3c2d1b0a9e8f",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:3735928559 cname:podium-test",
        "",
    ]
    .join("\r\n")
}

fn video_only_offer() -> String {
    audio_offer()
        .replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96")
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:96 VP8/90000")
        .replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
}

#[tokio::test]
async fn bad_offers_get_their_codes_and_nothing_else_breaks() {
    let hub = TestHub::start_with(|c| c.media.max_sdp_bytes = 4096).await;
    let (mut m, _) = hub.join("mod", "sdp", Role::Moderator).await;
    let (mut c, _) = hub.join("c", "sdp", Role::Speaker).await;

    // Before join: refused like every other request.
    let mut stranger = hub.connect().await;
    stranger.expect_error(json!({"type": "media_offer", "sdp": audio_offer()}), "unauthorized").await;

    c.expect_error(json!({"type": "media_offer", "sdp": "hello"}), "bad_request").await;
    c.expect_error(json!({"type": "media_offer", "sdp": "v=0\r\nthis is not sdp\r\n"}), "bad_request").await;
    let e = c.expect_error(json!({"type": "media_offer", "sdp": video_only_offer()}), "bad_request").await;
    assert!(e["message"].as_str().unwrap_or_default().contains("video"), "{e}");
    let no_audio =
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
    c.expect_error(json!({"type": "media_offer", "sdp": no_audio}), "bad_request").await;
    let pcmu =
        audio_offer().replace("opus/48000/2", "PCMU/8000").replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "");
    c.expect_error(json!({"type": "media_offer", "sdp": pcmu}), "bad_request").await;
    // Over [media] max_sdp_bytes (but under the websocket message limit).
    let padded = format!("{}a=x-pad:{}\r\n", audio_offer(), "p".repeat(5000));
    c.expect_error(json!({"type": "media_offer", "sdp": padded}), "too_large").await;
    // An answer when the SFU has offered nothing.
    c.expect_error(json!({"type": "media_answer", "sdp": audio_offer()}), "not_found").await;
    // Candidates are accepted (ICE-lite) and ignored.
    c.ok(json!({"type": "media_candidate", "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "mid": "0"}))
        .await;
    c.ok(json!({"type": "media_candidate", "candidate": ""})).await;

    // The connection, the room and the other participant carry on, and a good offer still works.
    c.ok(json!({"type": "raise_hand"})).await;
    m.event("hand_queue", |e| e["queue"]["total"] == 1).await;
    let ok = c.ok(json!({"type": "media_offer", "sdp": audio_offer()})).await;
    let answer = ok["result"]["sdp"].as_str().unwrap_or_default();
    assert!(answer.starts_with("v=0"), "{ok}");
    assert!(answer.contains("a=ice-lite"), "the SFU is ICE-lite: {answer}");
    assert!(answer.contains("opus/48000/2"), "{answer}");
    let port = hub.media.first().map(|a| a.port()).unwrap_or_default();
    assert!(answer.contains(&format!("127.0.0.1 {port} typ host")), "host candidate on the SFU socket: {answer}");
    m.ok(json!({"type": "approve_hand", "participant": "c"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn media_disabled_is_unavailable() {
    let hub = TestHub::start_with(|c| c.media.enabled = false).await;
    let (mut c, _) = hub.join("c", "nomedia", Role::Speaker).await;
    c.expect_error(json!({"type": "media_offer", "sdp": audio_offer()}), "unavailable").await;
    c.ok(json!({"type": "ping"})).await;
    hub.stop().await;
}
