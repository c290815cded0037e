//! Proves the `.proto` matches the wire: messages encode to bytes computed by hand from the
//! field numbers and types in shared/protocol (tag = field << 3 | wire type).

use std::collections::BTreeMap;

use switchboard_proto::rpc::{
    InvocationRequest, ParameterBinding, RpcHttp, RpcLog, StartStream, StatusResult, StreamingMessage,
    TypedData, parameter_binding::RpcData, rpc_log, status_result, typed_data::Data,
};
use switchboard_proto::{Content, Message};

fn encode(content: Content, request_id: &str) -> String {
    let msg = StreamingMessage { request_id: request_id.into(), content: Some(content) };
    hex::encode(msg.encode_to_vec())
}

fn map(k: &str, v: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(k.to_owned(), v.to_owned())])
}

#[test]
fn start_stream_is_field_20_with_worker_id_2() {
    let got = encode(Content::StartStream(StartStream { worker_id: "w1".into() }), "r");
    // 0a 01 'r'            request_id (1, len)
    // a2 01 04             start_stream (20 → varint 162 = a2 01), 4 bytes
    //   12 02 'w' '1'      worker_id (2, len)
    assert_eq!(got, "0a0172a20104120277 31".replace(' ', ""));
}

#[test]
fn invocation_request_with_rpc_http() {
    let http = RpcHttp {
        method: "GET".into(),
        url: "/x".into(),
        headers: map("a", "b"),
        body: Some(Box::new(TypedData { data: Some(Data::Bytes("hi".into())) })),
        query: map("q", "1"),
        ..Default::default()
    };
    let req = InvocationRequest {
        invocation_id: "i".into(),
        function_id: "f".into(),
        input_data: vec![ParameterBinding {
            name: "req".into(),
            rpc_data: Some(RpcData::Data(TypedData { data: Some(Data::Http(Box::new(http))) })),
        }],
        ..Default::default()
    };
    let got = encode(Content::InvocationRequest(req), "");
    let rpc_http = concat!(
        "0a03474554",       // method (1) "GET"
        "12022f78",         // url (2) "/x"
        "1a060a0161120162", // headers (3) entry {key 1: "a", value 2: "b"}
        "22041a026869",     // body (4) TypedData{bytes (3): "hi"}
        "7a060a0171120131", // query (15 → tag 0x7a) entry {"q": "1"}
    );
    assert_eq!(rpc_http.len() / 2, 31);
    let expected = format!(
        "2230{}", // invocation_request (4), 48 bytes
        format_args!(
            "0a0169120166 1a28 0a03726571 1221 2a1f{rpc_http}",
            // invocation_id (1) "i", function_id (2) "f", input_data (3) 40 bytes:
            //   name (1) "req", data (2) 33 bytes: TypedData http (5) 31 bytes
        )
    )
    .replace(' ', "");
    assert_eq!(got, expected);
}

#[test]
fn rpc_log_is_field_2() {
    let log = RpcLog {
        invocation_id: "i".into(),
        category: "c".into(),
        level: rpc_log::Level::Warning as i32,
        message: "m".into(),
        log_category: rpc_log::RpcLogCategory::System as i32,
        ..Default::default()
    };
    let got = encode(Content::RpcLog(log), "");
    // 12 0d: rpc_log (2), 13 bytes: invocation_id (1), category (2), level (3 varint) = 3,
    // message (4), log_category (8 varint → tag 0x40) = System (1)
    assert_eq!(got, "120d0a0169120163180322016d4001");
}

#[test]
fn the_odd_ones() {
    // TypedData.int is sint64: -1 zigzags to 1.
    let int = TypedData { data: Some(Data::Int(-1)) };
    assert_eq!(hex::encode(int.encode_to_vec()), "3001");
    // RpcHttp.status_code is a string at field 12 (tag 0x62).
    let http = RpcHttp { status_code: "200".into(), ..Default::default() };
    assert_eq!(hex::encode(http.encode_to_vec()), "6203323030");
    // StatusResult.status is field 4 and Success = 1.
    let ok = StatusResult { status: status_result::Status::Success as i32, ..Default::default() };
    assert_eq!(hex::encode(ok.encode_to_vec()), "2001");
    // RpcHttp.rawBody (17) and RpcLog.propertiesMap (9) keep their camelCase wire names.
    let raw = RpcHttp {
        raw_body: Some(Box::new(TypedData { data: Some(Data::String("x".into())) })),
        ..Default::default()
    };
    // field 17, wire type 2 → varint 138 = 8a 01
    assert_eq!(hex::encode(raw.encode_to_vec()), "8a01030a0178");
}
