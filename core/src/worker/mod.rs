//! The connection-mode worker state machine (in progress).
