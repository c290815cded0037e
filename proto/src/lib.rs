//! The Azure Functions language-worker protocol, `FunctionRpc` v1.10, for Switchboard.
//!
//! [`rpc`] holds the prost messages of package `AzureFunctionsRpcMessages`; the root-level types
//! the protocol imports without a package (`RpcClaimsIdentity`, `NullableString`, ...) sit at
//! this crate's root, as they do on the wire. With the `grpc` feature, [`grpc`] holds the tonic
//! server trait and client for `FunctionRpc.EventStream`.
//!
//! Maps are `BTreeMap` (deterministic encoding) and `bytes` fields are [`bytes::Bytes`].

#![allow(missing_docs, clippy::doc_lazy_continuation, clippy::large_enum_variant)]

include!(concat!(env!("OUT_DIR"), "/messages/_.rs"));

/// Messages of package `AzureFunctionsRpcMessages`.
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/messages/azure_functions_rpc_messages.rs"));
}

/// The tonic service `AzureFunctionsRpcMessages.FunctionRpc` (server trait and client).
#[cfg(feature = "grpc")]
pub mod grpc {
    include!(concat!(env!("OUT_DIR"), "/service/azure_functions_rpc_messages.rs"));
}

pub use prost::Message;
pub use rpc::StreamingMessage;
pub use rpc::streaming_message::Content;

/// gRPC path of the one method, for servers that route by hand.
pub const EVENT_STREAM_PATH: &str = "/AzureFunctionsRpcMessages.FunctionRpc/EventStream";
