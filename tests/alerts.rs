//! The Prometheus alerting rules (`packaging/prometheus/launchgraph.rules.yml`) against what
//! launchgraph exports, checked without Prometheus: every metric a rule names is either in the
//! series table of `src/metrics.rs` (exported today) or in the guard and host metric contract
//! of `docs/alerts.md` (exported once guards run), never both, with the labels a rule selects
//! on; every alert has tests that fire it and tests that must not (`launchgraph.rules.test.yml`)
//! and a section in docs/alerts.md. promtool itself runs in `scripts/check-alerts.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use launchgraph::metrics::{Metrics, STATES};

const RULES: &str = "packaging/prometheus/launchgraph.rules.yml";
const RULE_TESTS: &str = "packaging/prometheus/launchgraph.rules.test.yml";
const METRICS_RS: &str = "src/metrics.rs";
const ALERTS_MD: &str = "docs/alerts.md";
const CONTRACT_HEADING: &str = "## Guard and host metrics: the contract";

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One row of a metric table: `| `name` | type | `label`, `label` | value |`.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    kind: String,
    labels: BTreeSet<String>,
}

/// The metric rows of a Markdown table, from lines already stripped of any comment prefix.
fn metric_rows<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for line in lines {
        if !line.starts_with("| `launchgraph_") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(cells.len() >= 5, "a metric row with too few cells: {line}");
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let row = Row {
            kind: cells[2].to_owned(),
            labels,
        };
        assert!(rows.insert(name.clone(), row).is_none(), "{name} twice");
    }
    rows
}

/// The series table in the `//!` comment of src/metrics.rs.
fn exported() -> BTreeMap<String, Row> {
    let text = read(METRICS_RS);
    let rows = metric_rows(
        text.lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").trim_start()),
    );
    assert!(rows.contains_key("launchgraph_unit_state"), "{METRICS_RS}");
    rows
}

/// The contract table of docs/alerts.md: only the rows under its heading.
fn contract() -> BTreeMap<String, Row> {
    let text = read(ALERTS_MD);
    let start = text
        .find(CONTRACT_HEADING)
        .unwrap_or_else(|| panic!("{ALERTS_MD} has {CONTRACT_HEADING:?}"));
    let section = &text[start + CONTRACT_HEADING.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    // Empty once every contracted metric is exported.
    metric_rows(section.lines())
}

/// The PromQL of every rule: the `expr:` value, inline or as an indented block.
fn expressions(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("expr:") else {
            continue;
        };
        if line[..at].trim() != "" {
            continue;
        }
        let inline = line[at + "expr:".len()..].trim();
        if !inline.is_empty() && !inline.starts_with(['>', '|']) {
            out.push(inline.to_owned());
            continue;
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > at)
            .map(|l| l.trim())
            .collect();
        out.push(block.join(" "));
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Each `launchgraph_*` metric an expression names, with the label names of its selector.
fn selectors(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("launchgraph_") {
        let preceded = rest[..at].chars().next_back().is_some_and(is_name_char);
        let after = &rest[at..];
        let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
        let name = &after[..len];
        let mut labels = BTreeSet::new();
        if let Some(matchers) = after[len..].strip_prefix('{') {
            let body = &matchers[..matchers.find('}').expect("a selector's closing brace")];
            for matcher in body.split(',').filter(|m| !m.trim().is_empty()) {
                let label = matcher
                    .split(['=', '!', '~'])
                    .next()
                    .unwrap()
                    .trim()
                    .to_owned();
                labels.insert(label);
            }
        }
        if !preceded {
            out.push((name.to_owned(), labels));
        }
        rest = &after[len..];
    }
    out
}

/// The values of label `state` wherever an expression selects `launchgraph_unit_state`.
fn unit_state_values(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in expr.split("launchgraph_unit_state{").skip(1) {
        let body = &part[..part.find('}').unwrap()];
        for matcher in body.split(',') {
            if let Some(v) = matcher.trim().strip_prefix("state=") {
                out.push(v.trim_matches('"').to_owned());
            }
        }
    }
    out
}

/// The table row a series name belongs to: the name itself, or a histogram's `_bucket`,
/// `_sum` or `_count`. Returns the row's name and whether the name was a bucket.
fn family<'t>(name: &str, tables: &'t BTreeMap<String, Row>) -> Option<(&'t str, &'t Row, bool)> {
    if let Some((n, row)) = tables.get_key_value(name) {
        return Some((n.as_str(), row, false));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some((n, row)) = tables.get_key_value(base)
            && row.kind.starts_with("histogram")
        {
            return Some((n.as_str(), row, suffix == "_bucket"));
        }
    }
    None
}

#[test]
fn every_metric_a_rule_names_is_exported_or_in_the_guard_contract() {
    let exported = exported();
    let contract = contract();
    let both: Vec<&String> = exported
        .keys()
        .filter(|n| contract.contains_key(*n))
        .collect();
    assert!(
        both.is_empty(),
        "exported metrics still listed in the contract of {ALERTS_MD}: {both:?}"
    );
    let mut tables = exported.clone();
    tables.extend(contract.clone());

    let rules = read(RULES);
    let exprs = expressions(&rules);
    assert!(exprs.len() >= 14, "found {} expressions", exprs.len());
    let mut named = BTreeSet::new();
    for expr in &exprs {
        let found = selectors(expr);
        for (name, labels) in found {
            let (family_name, row, bucket) = family(&name, &tables).unwrap_or_else(|| {
                panic!(
                    "{RULES} names {name}, which is neither in the table of {METRICS_RS} \
                     nor in the contract of {ALERTS_MD}: {expr}"
                )
            });
            for label in &labels {
                let known = row.labels.contains(label)
                    || TARGET_LABELS.contains(&label.as_str())
                    || (bucket && label == "le");
                assert!(known, "{name} has no label {label:?} ({row:?}): {expr}");
            }
            named.insert(family_name.to_owned());
        }
        for state in unit_state_values(expr) {
            assert!(
                STATES.iter().any(|s| s.as_str() == state),
                "launchgraph_unit_state has no state {state:?}: {expr}"
            );
        }
    }
    // The rules cover the supervisor and each rail: a rule dropped by mistake shows here.
    for expected in [
        "launchgraph_up",
        "launchgraph_unit_state",
        "launchgraph_unit_restarts_total",
        "launchgraph_preflight_findings",
        "launchgraph_guard_state",
        "launchgraph_guard_action_last_result",
        "launchgraph_guard_value",
        "launchgraph_ttft_phase_seconds",
        "launchgraph_host_swap_out_bytes_total",
        "launchgraph_host_disk_free_ratio",
    ] {
        assert!(named.contains(expected), "no rule uses {expected}");
    }
}

#[test]
fn the_supervisor_series_the_rules_watch_are_in_a_fresh_exposition() {
    // Before anything fails: the failed-state series an alert watches, and launchgraph_up.
    let text = Metrics::new(["ollama"]).render();
    assert!(
        text.lines()
            .any(|l| l == "launchgraph_unit_state{unit=\"ollama\",state=\"failed\"} 0"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "launchgraph_up 1"), "{text}");
}

#[test]
fn the_table_reader_sees_types_and_labels() {
    let exported = exported();
    assert_eq!(
        exported["launchgraph_unit_restarts_total"],
        Row {
            kind: "counter".into(),
            labels: ["unit", "reason"].map(String::from).into(),
        }
    );
    assert!(exported["launchgraph_up"].labels.is_empty());
    assert!(exported["launchgraph_ttft_phase_seconds"].kind == "histogram");
    assert!(
        exported["launchgraph_guard_state"]
            .labels
            .contains("signal")
    );
    assert_eq!(
        exported["launchgraph_host_memory_stall_seconds_total"].labels,
        ["line"].map(String::from).into()
    );
    // A name with a suffix resolves to its histogram, and only a histogram.
    let tables: BTreeMap<String, Row> = exported.clone().into_iter().collect();
    assert!(family("launchgraph_ttft_phase_seconds_bucket", &tables).is_some_and(|f| f.2));
    assert!(family("launchgraph_guard_state_count", &tables).is_none());
    // A selector's labels, and names inside other identifiers left alone.
    assert_eq!(
        selectors(
            r#"sum(rate(launchgraph_x_bucket{le="1", phase!~"a|b"}[5m])) / not_launchgraph_y"#
        ),
        vec![(
            "launchgraph_x_bucket".to_owned(),
            ["le", "phase"].map(String::from).into()
        )]
    );
}

/// The alert names of the rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn every_alert_has_a_test_that_fires_it_and_one_that_must_not() {
    let alerts = alert_names(&read(RULES));
    assert!(alerts.len() >= 14, "{alerts:?}");
    let tests = read(RULE_TESTS);
    let mut fires: BTreeSet<String> = BTreeSet::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            assert!(
                alerts.iter().any(|a| a == name),
                "a test of no alert: {name}"
            );
            current = Some(name.to_owned());
        } else if *line == "exp_alerts: []" {
            silent.insert(current.clone().expect("exp_alerts after an alertname"));
        } else if *line == "exp_alerts:" {
            assert!(
                lines[i + 1].starts_with("- exp_labels:"),
                "{RULE_TESTS}: {line}"
            );
            fires.insert(current.clone().expect("exp_alerts after an alertname"));
        }
    }
    for alert in &alerts {
        assert!(fires.contains(alert), "no test fires {alert}");
        assert!(silent.contains(alert), "no test holds {alert} back");
    }
}

#[test]
fn every_alert_has_a_section_in_the_docs() {
    let docs = read(ALERTS_MD);
    let headings: Vec<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .collect();
    for alert in alert_names(&read(RULES)) {
        assert!(
            headings.iter().any(|h| h
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == alert)),
            "{ALERTS_MD} has no section for {alert}"
        );
    }
}
