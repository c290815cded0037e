//! `Debug` output that never shows a secret: app settings, the environment sent at
//! specialization, join and resume tokens. Anything the core holds may end up in a `{:?}` of a
//! log line or a test failure; these wrappers keep the names and hide the values.

use std::collections::BTreeMap;
use std::fmt;

use switchboard_proto::Content;
use switchboard_proto::rpc::StreamingMessage;

use crate::runtime::cap;

/// What a hidden value prints as (the admin API shows setting values the same way).
pub(crate) const HIDDEN: &str = "***";

/// A map whose keys may be shown and whose values may not.
pub(crate) struct Keys<'a>(pub(crate) &'a BTreeMap<String, String>);

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, HIDDEN))).finish()
    }
}

/// An optional secret: whether it is there, not what it is.
pub(crate) struct Secret<'a>(pub(crate) &'a Option<String>);

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => write!(f, "Some({HIDDEN:?})"),
            None => f.write_str("None"),
        }
    }
}

/// A message to a worker, with the environment of a `FunctionEnvironmentReloadRequest` (the
/// app's settings) and the resume token of a `WorkerInitRequest` hidden. Every other message
/// prints as it is.
pub(crate) struct Message<'a>(pub(crate) &'a StreamingMessage);

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let content = match &self.0.content {
            Some(Content::FunctionEnvironmentReloadRequest(reload)) => {
                let mut shown = reload.clone();
                for value in shown.environment_variables.values_mut() {
                    *value = HIDDEN.to_owned();
                }
                Content::FunctionEnvironmentReloadRequest(shown)
            }
            Some(Content::WorkerInitRequest(init)) if init.capabilities.contains_key(cap::RESUME_TOKEN) => {
                let mut shown = init.clone();
                shown.capabilities.insert(cap::RESUME_TOKEN.to_owned(), HIDDEN.to_owned());
                Content::WorkerInitRequest(shown)
            }
            _ => return fmt::Debug::fmt(self.0, f),
        };
        let msg = StreamingMessage { request_id: self.0.request_id.clone(), content: Some(content) };
        fmt::Debug::fmt(&msg, f)
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::rpc::FunctionEnvironmentReloadRequest;

    use super::*;

    #[test]
    fn values_are_hidden_and_names_kept() {
        let map = BTreeMap::from([("API_KEY".to_owned(), "hunter2".to_owned())]);
        let shown = format!("{:?}", Keys(&map));
        assert_eq!(shown, r#"{"API_KEY": "***"}"#);
        assert_eq!(format!("{:?}", Secret(&Some("hunter2".into()))), r#"Some("***")"#);
        assert_eq!(format!("{:?}", Secret(&None)), "None");
        let msg = StreamingMessage {
            request_id: String::new(),
            content: Some(Content::FunctionEnvironmentReloadRequest(FunctionEnvironmentReloadRequest {
                environment_variables: map.into_iter().collect(),
                function_app_directory: "/apps/a".into(),
            })),
        };
        let shown = format!("{:?}", Message(&msg));
        assert!(shown.contains("API_KEY") && shown.contains("/apps/a"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
