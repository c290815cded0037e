//! A strict parser for the Prometheus / OpenMetrics text exposition format, for tests: every
//! line must be metadata (`# HELP`, `# TYPE`, `# UNIT`), a sample, or the final `# EOF`;
//! metric and label names must be valid; each family's samples must follow its `# TYPE` and
//! use only the suffixes its type allows; families may not interleave; histograms must have
//! cumulative buckets ending in `+Inf` that agree with `_count`.

use std::collections::{BTreeMap, BTreeSet};

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
}

/// One metric family.
#[derive(Debug, Default)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, ...
    pub kind: String,
    /// `# HELP` text.
    pub help: Option<String>,
    /// `# UNIT`.
    pub unit: Option<String>,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Full sample name (with suffix).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

const TYPES: [&str; 9] =
    ["counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown", "untyped"];

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut consumed = None;
        loop {
            // `}` or `name="value"` followed by `,` or `}`.
            match chars.peek() {
                Some((i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let start = chars.peek().map(|(i, _)| *i).unwrap_or(0);
            let mut end = start;
            while let Some((i, c)) = chars.peek().copied() {
                if c == '=' {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            let key = &after[start..end];
            if !valid_label_name(key) {
                return Err(format!("invalid label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('=') || chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} must be followed by =\""));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in label {key}")),
                    },
                    Some((_, '\n')) | None => return Err(format!("unterminated value of label {key}")),
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} given twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                other => return Err(format!("expected , or }} after label {key}, got {other:?}")),
            }
        }
        let consumed = consumed.ok_or("unterminated label set")?;
        rest = &after[consumed..];
    }
    let rest = rest.strip_prefix(' ').ok_or("a single space must separate the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().ok_or("missing value")?;
    let value = parse_value(value).ok_or_else(|| format!("invalid value {value:?}"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<f64>().is_err()
    {
        return Err(format!("invalid timestamp {ts:?}"));
    }
    if fields.next().is_some() {
        return Err("trailing fields after the timestamp".into());
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Parses a whole exposition strictly.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<(String, BTreeMap<String, String>)> = BTreeSet::new();
    let mut eof = false;
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if eof {
            return Err(at("content after # EOF".into()));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else {
                return Err(at("malformed metadata".into()));
            };
            let rest = parts.next().unwrap_or("");
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                return Err(at(format!("unknown metadata keyword {keyword}")));
            }
            if !valid_metric_name(name) {
                return Err(at(format!("invalid metric name {name:?}")));
            }
            if current.as_deref() != Some(name) {
                if closed.contains(name) || exp.families.contains_key(name) {
                    return Err(at(format!("family {name} is split")));
                }
                if let Some(previous) = current.take() {
                    closed.insert(previous);
                }
                current = Some(name.to_owned());
                exp.families.insert(name.to_owned(), Family::default());
            }
            let family = exp.families.get_mut(name).expect("inserted above");
            if !family.samples.is_empty() {
                return Err(at("metadata after samples".into()));
            }
            match keyword {
                "HELP" => family.help = Some(rest.to_owned()),
                "UNIT" => family.unit = Some(rest.to_owned()),
                _ => {
                    if !TYPES.contains(&rest) {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    if !family.kind.is_empty() {
                        return Err(at("TYPE given twice".into()));
                    }
                    family.kind = rest.to_owned();
                }
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comments must be # HELP, # TYPE, # UNIT or # EOF".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family_name = current.clone().ok_or_else(|| at("a sample before any # TYPE".into()))?;
        let family = exp.families.get_mut(&family_name).expect("current family exists");
        if family.kind.is_empty() {
            return Err(at("a sample before its family's # TYPE".into()));
        }
        let suffix = sample
            .name
            .strip_prefix(family_name.as_str())
            .ok_or_else(|| at(format!("sample {} does not belong to family {family_name}", sample.name)))?;
        if !suffixes(&family.kind).contains(&suffix) {
            return Err(at(format!("suffix {suffix:?} is not allowed for a {}", family.kind)));
        }
        if !seen.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("duplicate sample".into()));
        }
        if family.kind == "counter" && suffix == "_total" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("a counter must not be negative".into()));
        }
        family.samples.push(sample);
    }
    if !eof {
        return Err("missing # EOF".into());
    }
    for (name, family) in &exp.families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(exp)
}

/// Buckets cumulative, `+Inf` present and equal to `_count`, per label set.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    /// Per label set (without `le`): the (le, count) buckets and `_count`.
    type Series = BTreeMap<BTreeMap<String, String>, (Vec<(f64, f64)>, Option<f64>)>;
    let mut series = Series::new();
    for s in &family.samples {
        let mut labels = s.labels.clone();
        if s.name.ends_with("_bucket") {
            let le = labels.remove("le").ok_or_else(|| format!("{name}: a bucket without le"))?;
            let le = parse_value(&le).ok_or_else(|| format!("{name}: invalid le {le:?}"))?;
            series.entry(labels).or_default().0.push((le, s.value));
        } else if s.name.ends_with("_count") {
            series.entry(labels).or_default().1 = Some(s.value);
        }
    }
    for (labels, (mut buckets, count)) in series {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return Err(format!("{name}{labels:?}: no +Inf bucket"));
        }
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{name}{labels:?}: buckets are not cumulative"));
        }
        if count != buckets.last().map(|b| b.1) {
            return Err(format!("{name}{labels:?}: _count {count:?} differs from the +Inf bucket"));
        }
    }
    Ok(())
}

impl Exposition {
    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        self.samples(name).find(|s| s.labels == want).map(|s| s.value)
    }

    /// The value, or 0 when the series does not exist yet.
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// Every sample named `name`.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families.values().flat_map(|f| &f.samples).filter(move |s| s.name == name)
    }

    /// The sum of every sample named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"a\\\"b\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3.5\n# EOF\n";
    let exp = parse(good).unwrap();
    assert_eq!(exp.value("a_requests_total", &[("x", "a\"b")]), Some(3.0));
    for bad in [
        "a 1\n# EOF\n",                                                      // no TYPE
        "# TYPE a counter\na 1\n# EOF\n",                                    // counter without _total
        "# TYPE a gauge\na{x=\"1\" } 1\n# EOF\n",                            // stray space
        "# TYPE a gauge\na 1\n",                                             // no EOF
        "# TYPE a gauge\na 1\na 2\n# EOF\n",                                 // duplicate
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n# EOF\n", // split family
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE a gauge\na one\n# EOF\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
}
