use super::*;

#[test]
fn unit_requests_parse_with_id() {
    let m: ClientMessage = serde_json::from_str(r#"{"type":"raise_hand","id":7}"#).expect("valid");
    assert_eq!(m.id, RequestId::Number(7));
    assert_eq!(m.request, Request::RaiseHand);
}

#[test]
fn struct_requests_parse() {
    let m: ClientMessage =
        serde_json::from_str(r#"{"type":"approve_hand","id":"a","participant":"bob"}"#).expect("valid");
    assert_eq!(m.request, Request::ApproveHand { participant: "bob".into(), reason: None });
}

#[test]
fn kinds_cover_every_request() {
    for kind in Request::KINDS {
        let needs = match *kind {
            "join" => r#","token":"t""#,
            "approve_hand" | "invite_to_stage" | "cancel_invite" | "move_to_audience" | "mute" | "kick" | "ban"
            | "unban" | "make_moderator" | "revoke_moderator" => r#","participant":"p""#,
            "set_muted" => r#","muted":true"#,
            "set_recording_opt_out" => r#","opt_out":true"#,
            "handover" => r#","stage":[]"#,
            "invite_to_room" | "uninvite_from_room" => r#","identity":"p""#,
            "media_offer" | "media_answer" => r#","sdp":"v=0""#,
            "media_candidate" => r#","candidate":"""#,
            "react" => r#","reaction":"clap""#,
            "send_chat" => r#","text":"hi""#,
            "delete_chat" => r#","message_id":4"#,
            _ => "",
        };
        let text = format!(r#"{{"type":"{kind}","id":1{needs}}}"#);
        let m: ClientMessage = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(m.request.kind(), *kind);
    }
}

#[test]
fn negotiation_picks_newest_common() {
    assert_eq!(negotiate(&[1, 2, 3]), Some(1));
    assert_eq!(negotiate(&[9]), None);
}

#[test]
fn replies_serialise_flat() {
    let ok = ServerMessage::Ok { id: RequestId::Text("x".into()), result: None };
    assert_eq!(ok.to_json(), r#"{"type":"ok","id":"x"}"#);
    let err = ServerMessage::error(None, ErrorCode::BadRequest, "no");
    assert_eq!(err.to_json(), r#"{"type":"error","id":null,"code":"bad_request","message":"no"}"#);
}

#[test]
fn close_codes_round_trip() {
    for c in CloseCode::ALL {
        assert_eq!(CloseCode::from_code(c.code()), Some(*c));
    }
}

#[test]
fn ice_servers_event_is_flat_and_welcome_omits_none() {
    let servers = IceServers {
        servers: vec![IceServer {
            urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            username: "1767229200:q0Xk3vRZ8uVd1a2b".into(),
            credential: "c2VjcmV0".into(),
        }],
        expires_at_ms: 1_767_229_200_000,
    };
    let text = ServerMessage::IceServers(servers.clone()).to_json();
    assert_eq!(
        text,
        r#"{"type":"ice_servers","servers":[{"urls":["turn:turn.example.com:3478?transport=udp"],"username":"1767229200:q0Xk3vRZ8uVd1a2b","credential":"c2VjcmV0"}],"expires_at_ms":1767229200000}"#
    );
    let back: ServerMessage = serde_json::from_str(&text).expect("round trip");
    assert_eq!(back, ServerMessage::IceServers(servers));
}

#[test]
fn set_room_info_tells_absent_from_null() {
    let parse = |text: &str| serde_json::from_str::<ClientMessage>(text).map(|m| m.request);
    let link = PinnedLink { url: "https://x.test".into(), title: None };
    assert_eq!(
        parse(r#"{"type":"set_room_info","id":1,"description":"Hi"}"#).expect("valid"),
        Request::SetRoomInfo { description: Some(Some("Hi".into())), pinned_link: None, reason: None }
    );
    assert_eq!(
        parse(r#"{"type":"set_room_info","id":1,"description":null,"pinned_link":{"url":"https://x.test"}}"#)
            .expect("valid"),
        Request::SetRoomInfo { description: Some(None), pinned_link: Some(Some(link.clone())), reason: None }
    );
    // Serialising keeps the distinction: null stays null, absent stays absent.
    let m = ClientMessage {
        id: RequestId::Number(2),
        request: Request::SetRoomInfo { description: None, pinned_link: Some(None), reason: None },
    };
    let text = serde_json::to_string(&m).expect("serialises");
    assert_eq!(text, r#"{"id":2,"type":"set_room_info","pinned_link":null}"#);
    assert_eq!(serde_json::from_str::<ClientMessage>(&text).expect("round trip"), m);
    assert!(parse(r#"{"type":"set_room_info","id":1,"pinned_link":"https://x.test"}"#).is_err(), "an object");
    // The snapshot omits empty info, so clients of older hubs and of rooms without info read the same shape.
    assert!(RoomInfo::default().is_empty());
    let event = ServerMessage::RoomInfo { seq: 3, info: RoomInfo::default() };
    assert_eq!(event.to_json(), r#"{"type":"room_info","seq":3,"info":{}}"#);
}

#[test]
fn chat_and_reactions_wire_shapes() {
    let message = ChatMessage {
        id: 42,
        from: Participant { id: "alice".into(), name: "Alice".into() },
        text: "hi".into(),
        at_ms: 1_765_000_000_000,
    };
    let event = ServerMessage::Chat { seq: 9, message: message.clone() };
    assert_eq!(
        event.to_json(),
        r#"{"type":"chat","seq":9,"message":{"id":42,"from":{"id":"alice","name":"Alice"},"text":"hi","at_ms":1765000000000}}"#
    );
    let deleted =
        ServerMessage::ChatDeleted { seq: 10, message_id: 42, by: Some("mod1".into()), by_admin: None, reason: None };
    assert_eq!(deleted.to_json(), r#"{"type":"chat_deleted","seq":10,"message_id":42,"by":"mod1"}"#);
    let counts = [("clap".to_owned(), 120), ("heart".to_owned(), 4)].into_iter().collect();
    let reactions = ServerMessage::Reactions { counts, window_ms: 500 };
    assert_eq!(reactions.to_json(), r#"{"type":"reactions","counts":{"clap":120,"heart":4},"window_ms":500}"#);
    // Results parse back as the variant they are (untagged replies).
    let sent: Reply = serde_json::from_str(r#"{"message_id":42}"#).expect("chat sent");
    assert_eq!(sent, Reply::ChatSent { message_id: 42 });
    let page: Reply = serde_json::from_str(
        &serde_json::to_string(&Reply::Chat(ChatPage { messages: vec![message], next_before: Some(42) }))
            .expect("serialises"),
    )
    .expect("page");
    assert!(matches!(page, Reply::Chat(ChatPage { next_before: Some(42), .. })), "{page:?}");
    // Settings from an older hub (no chat fields) read as chat on, no slow mode.
    let old: RoomSettings =
        serde_json::from_str(r#"{"open_mic":false,"closed":false,"stage_capacity":5}"#).expect("old");
    assert!(old.chat);
    assert_eq!(old.chat_slow_mode_ms, 0);
    let m: ClientMessage =
        serde_json::from_str(r#"{"type":"chat_history","id":3,"before":17,"limit":20}"#).expect("history");
    assert_eq!(m.request, Request::ChatHistory { before: Some(17), limit: Some(20) });
}

#[test]
fn recording_event_says_null_when_it_stops() {
    let stopped = ServerMessage::Recording { seq: 3, recording: None };
    assert_eq!(stopped.to_json(), r#"{"type":"recording","seq":3,"recording":null}"#);
    let started = ServerMessage::Recording {
        seq: 2,
        recording: Some(RecordingState { id: "rec_1".into(), started_at_ms: 5, by: Some("m".into()), by_admin: None }),
    };
    assert_eq!(
        started.to_json(),
        r#"{"type":"recording","seq":2,"recording":{"id":"rec_1","started_at_ms":5,"by":"m"}}"#
    );
}
