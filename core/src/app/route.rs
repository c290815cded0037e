//! HTTP routing: route templates (`items/{id:int}`) and which function of an app answers a
//! front-door request.
//!
//! The front door strips `/<app>/` and the query string; [`AppSpec::match_http`] does the rest:
//! route prefix, percent-decoding, template matching with ASP.NET-style constraints, and a
//! deterministic choice when several templates match.

use std::borrow::Cow;
use std::cmp::Reverse;

use std::collections::BTreeSet;

use super::parse::{MAX_ROUTE_LEN, quoted};
use super::spec::{AppSpec, FunctionSpec, HttpTrigger, RouteSegment, RouteTemplate, Trigger};

/// Result of resolving a front-door request against one app.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteMatch<'a> {
    /// A function answers: invoke it with these route parameters (in template order).
    Found {
        /// The function whose route matched and which accepts the method.
        function: &'a FunctionSpec,
        /// Route parameters, name and percent-decoded value, in template order.
        params: Vec<(String, String)>,
    },
    /// Some enabled function's route matches the path, but none accepts the method (HTTP 405).
    MethodNotAllowed,
    /// No enabled HTTP function's route matches the path (HTTP 404).
    NotFound,
}

impl RouteTemplate {
    /// Matches already-split, already-decoded path segments against this template.
    ///
    /// Returns the parameters in template order, or `None` if the path does not match.
    /// Literals compare ASCII case-insensitively. A trailing `{x?}` may be missing and a
    /// `{*rest}` takes the remaining segments joined with `/`; a parameter that matched nothing
    /// is left out of the result (as ASP.NET leaves it out of the route values). Parameters
    /// never match an empty segment. Constraints `int`/`long` (an `i64`), `bool`, `alpha`
    /// (`[A-Za-z]+`) and `guid` (8-4-4-4-12 hex digits) are enforced; other constraints
    /// (`min(1)`, `regex(...)`, ...) are accepted without checking.
    pub fn match_path(&self, segments: &[&str]) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        let mut rest = segments;
        for segment in &self.segments {
            match segment {
                RouteSegment::Literal(literal) => {
                    let (first, tail) = rest.split_first()?;
                    if !first.eq_ignore_ascii_case(literal) {
                        return None;
                    }
                    rest = tail;
                }
                RouteSegment::Param { name, optional, constraint } => match rest.split_first() {
                    None if *optional => {}
                    None => return None,
                    Some((first, tail)) => {
                        if first.is_empty() || !satisfies(constraint.as_deref(), first) {
                            return None;
                        }
                        params.push((name.clone(), (*first).to_string()));
                        rest = tail;
                    }
                },
                RouteSegment::CatchAll(name) => {
                    if !rest.is_empty() {
                        params.push((name.clone(), rest.join("/")));
                    }
                    rest = &[];
                }
            }
        }
        rest.is_empty().then_some(params)
    }

    /// Number of literal segments (more literals = more specific).
    fn literal_count(&self) -> usize {
        self.segments.iter().filter(|s| matches!(s, RouteSegment::Literal(_))).count()
    }

    /// Number of catch-all segments (a catch-all is the least specific).
    fn catch_all_count(&self) -> usize {
        self.segments.iter().filter(|s| matches!(s, RouteSegment::CatchAll(_))).count()
    }
}

impl AppSpec {
    /// Finds the function that answers `method` on `path`.
    ///
    /// `path` is what follows `/<app>/` on the front door, without the query string (for
    /// example `api/items/42`). The route prefix is stripped as whole segments (ASCII
    /// case-insensitive; nothing is stripped when it is empty); each segment is
    /// percent-decoded on its own, so `%2F` stays inside its segment, and a path with invalid
    /// percent-encoding or non-UTF-8 bytes is `NotFound`. Empty segments (from `//`) are
    /// ignored. Only enabled HTTP-triggered functions take part. When several routes match,
    /// the one with more literal segments wins, then the one with fewer catch-alls, then the
    /// first by function name. Methods compare ASCII case-insensitively.
    pub fn match_http(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let decoded;
        let segments: Vec<&str> = if path.contains('%') {
            let Some(d) = decode_path(path) else {
                return RouteMatch::NotFound;
            };
            decoded = d;
            decoded.iter().map(|s| s.as_ref()).collect()
        } else {
            // Nothing to decode (the common case): borrow the segments as they are.
            path.split('/').filter(|s| !s.is_empty()).collect()
        };
        let Some(rest) = strip_prefix(&self.route_prefix, &segments) else {
            return RouteMatch::NotFound;
        };

        let mut path_matched = false;
        let mut best: Option<(Rank<'_>, RouteMatch<'_>)> = None;
        for function in &self.functions {
            let Trigger::Http(http) = &function.trigger else {
                continue;
            };
            if function.disabled {
                continue;
            }
            let Some(params) = http.route.match_path(rest) else {
                continue;
            };
            path_matched = true;
            if !allows(http, method) {
                continue;
            }
            let rank = rank(&http.route, &function.name);
            if best.as_ref().is_none_or(|(best_rank, ..)| rank < *best_rank) {
                best = Some((rank, RouteMatch::Found { function, params }));
            }
        }
        match best {
            Some((_, found)) => found,
            None if path_matched => RouteMatch::MethodNotAllowed,
            None => RouteMatch::NotFound,
        }
    }
}

/// Sort key among matching routes: smaller is preferred (more literals, fewer catch-alls,
/// then function name).
type Rank<'a> = (Reverse<usize>, usize, &'a str);

/// The [`Rank`] of `route`, owned by the function `name`.
fn rank<'a>(route: &RouteTemplate, name: &'a str) -> Rank<'a> {
    (Reverse(route.literal_count()), route.catch_all_count(), name)
}

/// Whether an HTTP trigger accepts `method` (no methods listed = all methods).
fn allows(http: &HttpTrigger, method: &str) -> bool {
    http.methods.is_empty() || http.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
}

/// Strips the route prefix's segments from the front of `segments`.
fn strip_prefix<'s, 'p>(prefix: &str, segments: &'s [&'p str]) -> Option<&'s [&'p str]> {
    let mut rest = segments;
    for expected in prefix.split('/').filter(|s| !s.is_empty()) {
        let (first, tail) = rest.split_first()?;
        if !first.eq_ignore_ascii_case(expected) {
            return None;
        }
        rest = tail;
    }
    Some(rest)
}

/// Splits a path on `/`, drops empty segments and percent-decodes each segment.
fn decode_path(path: &str) -> Option<Vec<Cow<'_, str>>> {
    path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect()
}

/// Percent-decodes one segment (borrowing when there is nothing to decode); `None` on a
/// malformed escape or a result that is not UTF-8.
fn percent_decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The value of one hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Whether `value` satisfies every checked constraint in `constraint` (`int`, `int:min(1)`).
fn satisfies(constraint: Option<&str>, value: &str) -> bool {
    let Some(constraint) = constraint else {
        return true;
    };
    split_constraints(constraint).into_iter().all(|one| {
        let name = one.split('(').next().unwrap_or("");
        match name.to_ascii_lowercase().as_str() {
            "int" | "long" => value.parse::<i64>().is_ok(),
            "bool" => value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false"),
            "alpha" => !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphabetic()),
            "guid" => is_guid(value),
            _ => true,
        }
    })
}

/// Splits `int:min(1)` into `["int", "min(1)"]`, ignoring `:` inside parentheses.
fn split_constraints(constraint: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in constraint.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&constraint[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&constraint[start..]);
    parts
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits.
fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ----- template syntax -------------------------------------------------------------------------

/// Parses a route template; see [`super::parse::parse_route`]. The error is the problem alone.
pub(crate) fn route_template(template: &str) -> Result<RouteTemplate, String> {
    let length = template.chars().count();
    if length > MAX_ROUTE_LEN {
        return Err(format!("too long: {length} characters (at most {MAX_ROUTE_LEN})"));
    }
    let raw = template.trim_matches('/');
    let mut segments = Vec::new();
    let mut names = BTreeSet::new();
    if !raw.is_empty() {
        let count = raw.split('/').count();
        for (index, text) in raw.split('/').enumerate() {
            let segment = route_segment(text)?;
            let last = index + 1 == count;
            match &segment {
                RouteSegment::Param { name, optional: true, .. } if !last => {
                    return Err(format!("optional parameter {} must be the last segment", quoted(name)));
                }
                RouteSegment::CatchAll(name) if !last => {
                    return Err(format!("catch-all parameter {} must be the last segment", quoted(name)));
                }
                RouteSegment::Param { name, .. } | RouteSegment::CatchAll(name) => {
                    if !names.insert(name.to_ascii_lowercase()) {
                        return Err(format!("parameter {} appears twice", quoted(name)));
                    }
                }
                RouteSegment::Literal(_) => {}
            }
            segments.push(segment);
        }
    }
    Ok(RouteTemplate { raw: raw.to_string(), segments })
}

/// One template segment: a literal, `{param...}` or `{*catchall}`.
fn route_segment(text: &str) -> Result<RouteSegment, String> {
    if text.is_empty() {
        return Err("empty segment (\"//\")".to_string());
    }
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        check_literal(text)?;
        return Ok(RouteSegment::Literal(text.to_string()));
    };
    if inner.contains(['{', '}']) {
        return Err(format!("segment {}: '{{' and '}}' escapes are not supported", quoted(text)));
    }
    if inner.contains('=') {
        return Err(format!("segment {}: default values are not supported", quoted(text)));
    }
    if let Some(rest) = inner.strip_prefix('*') {
        let name = rest.strip_prefix('*').unwrap_or(rest);
        if name.contains(':') {
            return Err(format!("segment {}: constraints on a catch-all are not supported", quoted(text)));
        }
        let name = name.strip_suffix('?').unwrap_or(name);
        check_param_name(name, text)?;
        return Ok(RouteSegment::CatchAll(name.to_string()));
    }
    let (inner, optional) = match inner.strip_suffix('?') {
        Some(inner) => (inner, true),
        None => (inner, false),
    };
    let (name, constraint) = match inner.split_once(':') {
        Some((name, constraint)) => (name, Some(constraint)),
        None => (inner, None),
    };
    check_param_name(name, text)?;
    if let Some(constraint) = constraint
        && split_constraints(constraint).iter().any(|c| c.is_empty())
    {
        return Err(format!("segment {}: empty constraint", quoted(text)));
    }
    Ok(RouteSegment::Param { name: name.to_string(), optional, constraint: constraint.map(str::to_string) })
}

/// Parameter names: letters, digits and `_`.
fn check_param_name(name: &str, segment: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("segment {}: parameter without a name", quoted(segment)));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "segment {}: parameter names may hold only letters, digits and '_'",
            quoted(segment)
        ));
    }
    Ok(())
}

/// A literal route segment: no braces, no characters that cannot appear in a decoded path
/// segment, not `.` or `..`. Also used for the route prefix.
pub(crate) fn check_literal(text: &str) -> Result<(), String> {
    if text == "." || text == ".." {
        return Err(format!("segment {} is not allowed", quoted(text)));
    }
    if text.contains(['{', '}']) {
        return Err(format!("segment {} mixes text and a parameter, which is not supported", quoted(text)));
    }
    let bad = text.chars().find(|c| c.is_control() || c.is_whitespace() || "?#%\\\"<>".contains(*c));
    if let Some(bad) = bad {
        return Err(format!("segment {} contains {bad:?}, which is not allowed in a route", quoted(text)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::app::parse::parse_route;
    use crate::app::spec::{AppName, BindingSpec, Direction, ScaleSpec};

    fn route(template: &str) -> RouteTemplate {
        parse_route(template).unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect())
    }

    fn http_function(name: &str, template: &str, methods: &[&str]) -> FunctionSpec {
        FunctionSpec {
            name: name.to_string(),
            directory: format!("/apps/a/{name}"),
            script_file: format!("/apps/a/{name}/__init__.py"),
            entry_point: String::new(),
            trigger: Trigger::Http(HttpTrigger {
                binding: "req".to_string(),
                route: route(template),
                methods: methods.iter().map(|m| (*m).to_string()).collect(),
                auth_level: "anonymous".to_string(),
            }),
            bindings: vec![BindingSpec {
                name: "req".to_string(),
                kind: "httpTrigger".to_string(),
                direction: Direction::In,
                data_type: None,
                raw: "{}".to_string(),
            }],
            retry: None,
            disabled: false,
        }
    }

    fn app(prefix: &str, functions: Vec<FunctionSpec>) -> AppSpec {
        AppSpec {
            name: AppName::new_unchecked("a".to_string()),
            language: "python".to_string(),
            version: String::new(),
            directory: "/apps/a".to_string(),
            functions,
            settings: BTreeMap::new(),
            scale: ScaleSpec::default(),
            function_timeout: Duration::from_secs(300),
            route_prefix: prefix.to_string(),
            expose_errors: false,
        }
    }

    fn found<'a>(m: &RouteMatch<'a>) -> (&'a str, Vec<(String, String)>) {
        match m {
            RouteMatch::Found { function, params } => (function.name.as_str(), params.clone()),
            other => panic!("expected Found, got {other:?}"),
        }
    }

    #[test]
    fn literals_and_params() {
        let t = route("items/{id}/details");
        assert_eq!(t.match_path(&["items", "42", "details"]), params(&[("id", "42")]));
        assert_eq!(t.match_path(&["ITEMS", "x", "Details"]), params(&[("id", "x")]));
        assert_eq!(t.match_path(&["items", "42"]), None);
        assert_eq!(t.match_path(&["items", "42", "details", "more"]), None);
        assert_eq!(t.match_path(&["other", "42", "details"]), None);
        assert_eq!(t.match_path(&["items", "", "details"]), None);
    }

    #[test]
    fn params_keep_template_order_and_case() {
        let t = route("{b}/{A}");
        assert_eq!(t.match_path(&["x", "Y"]), params(&[("b", "x"), ("A", "Y")]));
    }

    #[test]
    fn optional_param_at_the_end() {
        let t = route("items/{id?}");
        assert_eq!(t.match_path(&["items", "7"]), params(&[("id", "7")]));
        assert_eq!(t.match_path(&["items"]), params(&[]));
        assert_eq!(t.match_path(&["items", "7", "8"]), None);
        let t = route("items/{id:int?}");
        assert_eq!(t.match_path(&["items"]), params(&[]));
        assert_eq!(t.match_path(&["items", "x"]), None);
    }

    #[test]
    fn catch_all_takes_the_rest() {
        let t = route("files/{*path}");
        assert_eq!(t.match_path(&["files", "a", "b.txt"]), params(&[("path", "a/b.txt")]));
        assert_eq!(t.match_path(&["files", "a"]), params(&[("path", "a")]));
        assert_eq!(t.match_path(&["files"]), params(&[]));
        assert_eq!(t.match_path(&["other"]), None);
    }

    #[test]
    fn empty_template_matches_only_the_root() {
        let t = route("");
        assert_eq!(t.match_path(&[]), params(&[]));
        assert_eq!(t.match_path(&["x"]), None);
    }

    #[test]
    fn constraints_are_enforced() {
        let int = route("n/{v:int}");
        assert_eq!(int.match_path(&["n", "-12"]), params(&[("v", "-12")]));
        assert_eq!(int.match_path(&["n", "12a"]), None);
        assert_eq!(int.match_path(&["n", "99999999999999999999"]), None);
        let boolean = route("b/{v:bool}");
        assert_eq!(boolean.match_path(&["b", "TRUE"]), params(&[("v", "TRUE")]));
        assert_eq!(boolean.match_path(&["b", "yes"]), None);
        let alpha = route("a/{v:alpha}");
        assert_eq!(alpha.match_path(&["a", "abcXYZ"]), params(&[("v", "abcXYZ")]));
        assert_eq!(alpha.match_path(&["a", "ab1"]), None);
        assert_eq!(alpha.match_path(&["a", "é"]), None);
        let guid = route("g/{v:guid}");
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(guid.match_path(&["g", id]), params(&[("v", id)]));
        assert_eq!(guid.match_path(&["g", "0f8fad5b-d9cb-469f-a165-70867728950"]), None);
        assert_eq!(guid.match_path(&["g", "0f8fad5bd9cb469fa16570867728950e"]), None);
        assert_eq!(guid.match_path(&["g", "zf8fad5b-d9cb-469f-a165-70867728950e"]), None);
    }

    #[test]
    fn chained_and_unknown_constraints() {
        let t = route("n/{v:int:min(1)}");
        assert_eq!(t.match_path(&["n", "5"]), params(&[("v", "5")]));
        assert_eq!(t.match_path(&["n", "x"]), None);
        let t = route("n/{v:regex(^a:b$)}");
        assert_eq!(t.match_path(&["n", "anything"]), params(&[("v", "anything")]));
        assert_eq!(split_constraints("regex(a:b):int"), vec!["regex(a:b)", "int"]);
    }

    #[test]
    fn match_http_strips_the_default_prefix() {
        let app = app("api", vec![http_function("get_item", "items/{id}", &["GET"])]);
        let m = app.match_http("get", "api/items/42");
        assert_eq!(found(&m), ("get_item", vec![("id".to_string(), "42".to_string())]));
        assert_eq!(app.match_http("GET", "API/items/42"), m);
        assert_eq!(app.match_http("GET", "items/42"), RouteMatch::NotFound);
        assert_eq!(app.match_http("GET", "apix/items/42"), RouteMatch::NotFound);
        assert_eq!(app.match_http("GET", ""), RouteMatch::NotFound);
    }

    #[test]
    fn match_http_with_empty_and_custom_prefixes() {
        let bare = app("", vec![http_function("hello", "hello", &[])]);
        assert_eq!(found(&bare.match_http("GET", "hello")).0, "hello");
        assert_eq!(bare.match_http("GET", "api/hello"), RouteMatch::NotFound);
        let custom = app("v1/public", vec![http_function("hello", "hello", &[])]);
        assert_eq!(found(&custom.match_http("GET", "v1/public/hello")).0, "hello");
        assert_eq!(found(&custom.match_http("GET", "/v1//public/hello/")).0, "hello");
        assert_eq!(custom.match_http("GET", "v1/hello"), RouteMatch::NotFound);
    }

    #[test]
    fn match_http_ignores_empty_segments() {
        let app = app("api", vec![http_function("f", "a/{x}", &[])]);
        assert_eq!(found(&app.match_http("GET", "//api//a///b/")).1, params(&[("x", "b")]).unwrap());
    }

    #[test]
    fn match_http_percent_decodes_each_segment() {
        let app = app("api", vec![http_function("f", "files/{name}", &[])]);
        let (_, got) = found(&app.match_http("GET", "api/files/a%2Fb%20c"));
        assert_eq!(got, params(&[("name", "a/b c")]).unwrap());
        assert_eq!(found(&app.match_http("GET", "api/%66iles/x")).0, "f");
        let (_, got) = found(&app.match_http("GET", "api/files/%C3%A9"));
        assert_eq!(got, params(&[("name", "é")]).unwrap());
        assert_eq!(app.match_http("GET", "api/files/%zz"), RouteMatch::NotFound);
        assert_eq!(app.match_http("GET", "api/files/%4"), RouteMatch::NotFound);
        assert_eq!(app.match_http("GET", "api/files/%FF"), RouteMatch::NotFound);
        let two = app.match_http("GET", "api/files/a%2Fb/c");
        assert_eq!(two, RouteMatch::NotFound, "%2F must not split the segment");
    }

    #[test]
    fn method_not_allowed_versus_not_found() {
        let app = app(
            "api",
            vec![
                http_function("create", "items", &["POST"]),
                http_function("list", "items", &["GET", "HEAD"]),
            ],
        );
        assert_eq!(found(&app.match_http("post", "api/items")).0, "create");
        assert_eq!(found(&app.match_http("Head", "api/items")).0, "list");
        assert_eq!(app.match_http("DELETE", "api/items"), RouteMatch::MethodNotAllowed);
        assert_eq!(app.match_http("DELETE", "api/nothing"), RouteMatch::NotFound);
    }

    #[test]
    fn precedence_literals_then_catch_alls_then_name() {
        let app = app(
            "api",
            vec![
                http_function("a_param", "items/{id}", &[]),
                http_function("b_literal", "items/special", &[]),
                http_function("c_catch_all", "items/{*rest}", &[]),
                http_function("d_catch_all_2", "{*all}", &[]),
            ],
        );
        assert_eq!(found(&app.match_http("GET", "api/items/special")).0, "b_literal");
        assert_eq!(found(&app.match_http("GET", "api/items/42")).0, "a_param");
        assert_eq!(found(&app.match_http("GET", "api/items/4/2")).0, "c_catch_all");
        assert_eq!(found(&app.match_http("GET", "api/other")).0, "d_catch_all_2");
        let tie = app_with_tie();
        assert_eq!(found(&tie.match_http("GET", "api/x")).0, "alpha");
    }

    fn app_with_tie() -> AppSpec {
        // Functions are sorted in a real AppSpec; the tie-break must not rely on it.
        app("api", vec![http_function("beta", "{x}", &[]), http_function("alpha", "{y}", &[])])
    }

    #[test]
    fn precedence_prefers_a_method_match_over_a_more_specific_route() {
        let app = app(
            "api",
            vec![
                http_function("special", "items/special", &["GET"]),
                http_function("any", "items/{id}", &["POST"]),
            ],
        );
        assert_eq!(found(&app.match_http("POST", "api/items/special")).0, "any");
    }

    #[test]
    fn disabled_and_non_http_functions_do_not_route() {
        let mut off = http_function("off", "x", &[]);
        off.disabled = true;
        let mut timer = http_function("timer", "y", &[]);
        timer.trigger = Trigger::Timer {
            binding: "t".to_string(),
            schedule: "0 * * * * *".to_string(),
            run_on_startup: false,
        };
        let app = app("api", vec![off, timer]);
        assert_eq!(app.match_http("GET", "api/x"), RouteMatch::NotFound);
        assert_eq!(app.match_http("GET", "api/y"), RouteMatch::NotFound);
    }

    proptest! {
        #[test]
        fn match_path_never_panics(
            template in "[a-z{}*?:()/=0-9]{0,40}",
            segments in proptest::collection::vec("[a-z0-9%{}-]{0,6}", 0..6),
        ) {
            if let Ok(t) = parse_route(&template) {
                let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
                let _ = t.match_path(&segments);
            }
        }

        #[test]
        fn match_http_never_panics(method in "\\PC{0,8}", path in "\\PC{0,60}") {
            let app = app(
                "api",
                vec![
                    http_function("a", "items/{id:int}/{*rest}", &["GET"]),
                    http_function("b", "{x:guid}/{y?}", &[]),
                ],
            );
            let _ = app.match_http(&method, &path);
        }
    }
}
