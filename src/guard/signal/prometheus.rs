//! The Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), as far as a sampler reads
//! it: every sample line's name, labels and value. Comments (`# HELP`, `# TYPE`, any other)
//! and blank lines are skipped; timestamps are accepted and dropped.
//!
//! Written here rather than taken from `prometheus-parse` 0.2: that crate's line pattern
//! (`^(\w+)(\{([^}]+)\})?…`) accepts neither the colon in `llamacpp:requests_deferred` nor a
//! `}` inside a quoted label value.
//!
//! Handled: metric names with colons (`[a-zA-Z_:][a-zA-Z0-9_:]*`), quoted names inside the
//! braces (`{"my.metric",a="b"}`, the UTF-8 form of Prometheus 3), label values with the
//! escapes `\\`, `\"` and `\n`, a trailing comma in the label set, spaces or tabs between
//! tokens, values as Go writes them (`1.5e+06`, `NaN`, `+Inf`, `-Inf`).

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A line the parser could not read: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct PromError {
    pub line: usize,
    pub why: String,
}

/// All sample lines of an exposition. One malformed line fails the whole text, as it fails
/// a Prometheus scrape: a half-read exposition could hide the series asked for.
pub fn parse(text: &str) -> Result<Vec<PromSample>, PromError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|why| PromError { line: i + 1, why })?);
    }
    Ok(out)
}

/// A metric name and label equalities: `llamacpp:requests_deferred`, or
/// `http_requests_total{code="200"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    /// Every pair must be present with exactly this value; other labels may be there too.
    pub labels: Vec<(String, String)>,
}

impl Selector {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: Vec::new(),
        }
    }

    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    pub fn matches(&self, s: &PromSample) -> bool {
        s.name == self.name
            && self
                .labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
    }

    /// The sum of the matching samples (one per slot, say), or why there is none. NaN is a
    /// value the exporter chose to say it does not know; it is reported as such.
    pub fn select(&self, samples: &[PromSample]) -> Result<f64, String> {
        let mut sum = 0.0;
        let mut count = 0;
        for s in samples.iter().filter(|s| self.matches(s)) {
            if s.value.is_nan() {
                return Err(format!("{} is NaN", self.name));
            }
            sum += s.value;
            count += 1;
        }
        if count == 0 {
            let same_name = samples.iter().filter(|s| s.name == self.name).count();
            return Err(if same_name == 0 {
                format!("no metric {}", self.name)
            } else {
                format!(
                    "{} series of {} but none with the labels asked for",
                    same_name, self.name
                )
            });
        }
        Ok(sum)
    }
}

fn parse_line(line: &str) -> Result<PromSample, String> {
    let mut c = Cursor { s: line, at: 0 };
    let mut name = c.name(true);
    let mut labels = Vec::new();
    let after_name = c.at;
    c.space();
    if !c.eat('{') {
        // The space belongs before the value.
        c.at = after_name;
    } else {
        c.space();
        if name.is_empty() && c.peek() == Some('"') {
            name = c.quoted()?;
            c.space();
            if !c.eat(',') && c.peek() != Some('}') {
                return Err("expected , or } after the quoted metric name".into());
            }
        }
        loop {
            c.space();
            if c.eat('}') {
                break;
            }
            let label = if c.peek() == Some('"') {
                c.quoted()?
            } else {
                c.name(false)
            };
            if label.is_empty() {
                return Err(format!("expected a label name at column {}", c.at + 1));
            }
            c.space();
            if !c.eat('=') {
                return Err(format!("expected = after label {label}"));
            }
            c.space();
            let value = c.quoted()?;
            labels.push((label, value));
            c.space();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err(format!("expected , or }} at column {}", c.at + 1));
        }
    }
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let rest = &line[c.at..];
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("expected a space before the value of {name}"));
    }
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    let value_text = fields
        .next()
        .ok_or_else(|| format!("{name} has no value"))?;
    let value =
        parse_value(value_text).ok_or_else(|| format!("{name}: not a value: {value_text}"))?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("{name}: not a timestamp: {ts}"));
    }
    if fields.next().is_some() {
        return Err(format!("{name}: more than a value and a timestamp"));
    }
    Ok(PromSample {
        name,
        labels,
        value,
    })
}

/// A Go float as the exposition writes it: `NaN`, `+Inf`, `-Inf` (any case), or a decimal
/// with an optional exponent.
fn parse_value(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        // Rust's parser also takes "infinity" and "nan" spelled otherwise; only digits here.
        _ if t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            t.parse().ok()
        }
        _ => None,
    }
}

struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    /// A metric name (colons allowed) or a label name (no colons); empty when none is here.
    fn name(&mut self, colons: bool) -> String {
        let start = self.at;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (colons && c == ':')
                || (self.at > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        self.s[start..self.at].to_owned()
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat('"') {
            return Err(format!("expected \" at column {}", self.at + 1));
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("unterminated quoted string".into());
            };
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err("unterminated quoted string".into());
                    };
                    self.at += e.len_utf8();
                    match e {
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        'n' => out.push('\n'),
                        // The format defines only these three; others are kept as written.
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                other => out.push(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> PromSample {
        let mut all = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(all.len(), 1, "{line}");
        all.remove(0)
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sample_lines() {
        type Row = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            f64,
        );
        let table: &[Row] = &[
            (
                "llamacpp:requests_deferred 2",
                "llamacpp:requests_deferred",
                &[],
                2.0,
            ),
            ("a 1.5e+06", "a", &[], 1.5e6),
            ("a -2E-3 1700000000000", "a", &[], -0.002),
            ("a\t\t7", "a", &[], 7.0),
            ("a{} 1", "a", &[], 1.0),
            ("a{b=\"c\"} 1", "a", &[("b", "c")], 1.0),
            (
                "a { b = \"c\" , d=\"e\", } 3",
                "a",
                &[("b", "c"), ("d", "e")],
                3.0,
            ),
            (
                r#"a{p="C:\\dir",q="say \"hi\"",r="x\ny"} 4"#,
                "a",
                &[("p", "C:\\dir"), ("q", "say \"hi\""), ("r", "x\ny")],
                4.0,
            ),
            (r#"a{b="}{,=",} 5"#, "a", &[("b", "}{,=")], 5.0),
            (r#"a{b="ü €"} 6"#, "a", &[("b", "ü €")], 6.0),
            (
                r#"{"my.metric",le="0.5"} 8"#,
                "my.metric",
                &[("le", "0.5")],
                8.0,
            ),
            (r#"{"my.metric"} 9"#, "my.metric", &[], 9.0),
            ("_x:y_1 +Inf", "_x:y_1", &[], f64::INFINITY),
            ("a -Inf", "a", &[], f64::NEG_INFINITY),
        ];
        for &(line, name, pairs, value) in table {
            let s = one(line);
            assert_eq!(s.name, name, "{line}");
            assert_eq!(s.labels, labels(pairs), "{line}");
            assert_eq!(s.value, value, "{line}");
        }
        assert!(one("a NaN").value.is_nan());
    }

    #[test]
    fn malformed_lines_fail_the_text_with_their_number() {
        let table = [
            "a",
            "a{b=\"c\"}1",
            "a{b=c} 1",
            "a{b=\"c} 1",
            "a{b=\"c\" d=\"e\"} 1",
            "a{=\"c\"} 1",
            "a one",
            "a infinity",
            "a 1 2.5",
            "a 1 2 3",
            "9a 1",
            "{} 1",
        ];
        for line in table {
            let e = parse(&format!("# HELP a fine\nok 1\n{line}\n")).unwrap_err();
            assert_eq!(e.line, 3, "{line}: {e}");
        }
    }

    // In the shape of llama-server's /metrics (--metrics): HELP and TYPE comments, one
    // sample per metric, colons in the names.
    const LLAMA: &str = "\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 2412
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
";

    #[test]
    fn selectors_pick_a_metric_and_sum_its_matching_series() {
        let all = parse(LLAMA).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            Selector::new("llamacpp:requests_deferred").select(&all),
            Ok(3.0)
        );
        assert_eq!(
            Selector::new("llamacpp:requests").select(&all),
            Err("no metric llamacpp:requests".into())
        );

        let slots =
            parse("q{slot=\"0\",kind=\"x\"} 2\nq{slot=\"1\",kind=\"x\"} 3\nq{slot=\"2\"} 4\n")
                .unwrap();
        assert_eq!(Selector::new("q").select(&slots), Ok(9.0));
        assert_eq!(
            Selector::new("q").label("kind", "x").select(&slots),
            Ok(5.0)
        );
        assert_eq!(
            Selector::new("q").label("slot", "2").select(&slots),
            Ok(4.0)
        );
        let e = Selector::new("q")
            .label("slot", "9")
            .select(&slots)
            .unwrap_err();
        assert!(e.contains("3 series of q but none"), "{e}");
        let nan = parse("q NaN\n").unwrap();
        assert!(Selector::new("q").select(&nan).unwrap_err().contains("NaN"));
    }
}
