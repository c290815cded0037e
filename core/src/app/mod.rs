//! Function apps: their typed definition ([`spec`]), how an app folder's text becomes one
//! ([`parse`]), and how a front-door path finds a function ([`route`]).
//!
//! Everything here is pure: the shell reads the files and hands over their text.

pub mod parse;
pub mod route;
pub mod spec;

pub use parse::{
    AppFiles, AppOptions, CustomHandler, FunctionFiles, HostJson, SpecError, parse_app, parse_app_name,
    parse_function, parse_host_json, parse_local_settings, parse_route, parse_timespan,
};
pub use route::RouteMatch;
pub use spec::*;
