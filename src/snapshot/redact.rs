//! Redaction: which keys hold secrets, and how their values are replaced by [`REDACTED`] in
//! environments, plists, unit files and JSON reports; and [`Secrets`], every secret value met
//! while collecting, searched for and replaced everywhere else before anything is written.
//! The rules are documented in docs/snapshot.md.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

/// What a secret's value is replaced by.
pub const REDACTED: &str = "<redacted>";

/// A variable or key whose name contains one of these (in any case) holds a secret.
pub(super) const SECRET_WORDS: [&str; 4] = ["TOKEN", "KEY", "SECRET", "PASSWORD"];

/// Secret values at least this long are also searched for, and redacted, everywhere else in
/// the snapshot (a token echoed in a doctor report, passed on a command line). Shorter ones
/// would match innocent text (a port number, a pid); they are redacted where their key is.
const MIN_SEARCHED_SECRET: usize = 6;

/// Whether a variable or key named `name` holds a secret: its name contains TOKEN, KEY,
/// SECRET or PASSWORD, in any case.
pub fn is_secret_key(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Secret values met anywhere, searched for everywhere else before anything is written.
#[derive(Default)]
pub(super) struct Secrets(BTreeSet<String>);

impl Secrets {
    pub(super) fn add(&mut self, value: &str) {
        if value.chars().count() >= MIN_SEARCHED_SECRET && value != REDACTED {
            self.0.insert(value.to_owned());
        }
    }

    pub(super) fn extend(&mut self, other: Secrets) {
        self.0.extend(other.0);
    }

    pub(super) fn add_env(&mut self, env: &BTreeMap<String, String>) {
        for (k, v) in env {
            if is_secret_key(k) {
                self.add(v);
            }
        }
    }

    /// `text` with every secret replaced: as written, and as it appears escaped in JSON,
    /// TOML basic strings or XML.
    pub(super) fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        // Longest first, so a secret that contains another is replaced whole.
        let mut secrets: Vec<&String> = self.0.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in secrets {
            let quoted = serde_json::to_string(s).unwrap_or_default();
            let json = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default();
            let xml = s
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;");
            for form in [s.as_str(), json, xml.as_str()] {
                if !form.is_empty() && out.contains(form) {
                    out = Cow::Owned(out.replace(form, REDACTED));
                }
            }
        }
        out
    }

    /// Every string in `v` scrubbed; numbers and keys are left as they are.
    pub(super) fn scrub_json(&self, v: &mut Json) {
        match v {
            Json::String(s) => {
                if let Cow::Owned(new) = self.scrub(s) {
                    *s = new;
                }
            }
            Json::Array(a) => a.iter_mut().for_each(|v| self.scrub_json(v)),
            Json::Object(o) => o.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

/// `env` with the values of secret keys replaced.
pub(super) fn redact_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// Redacts a plist: the values of secret keys in `EnvironmentVariables`, and every known
/// secret value in any string.
pub(super) fn redact_plist(v: &mut plist::Value, secrets: &Secrets) {
    if let Some(env) = v
        .as_dictionary_mut()
        .and_then(|d| d.get_mut("EnvironmentVariables"))
        .and_then(plist::Value::as_dictionary_mut)
    {
        for (k, val) in env.iter_mut() {
            if is_secret_key(k) {
                *val = plist::Value::String(REDACTED.to_owned());
            }
        }
    }
    scrub_plist(v, secrets);
}

fn scrub_plist(v: &mut plist::Value, secrets: &Secrets) {
    match v {
        plist::Value::String(s) => {
            if let Cow::Owned(new) = secrets.scrub(s) {
                *s = new;
            }
        }
        plist::Value::Array(a) => a.iter_mut().for_each(|v| scrub_plist(v, secrets)),
        plist::Value::Dictionary(d) => d.values_mut().for_each(|v| scrub_plist(v, secrets)),
        _ => {}
    }
}

/// Strings under secret keys, anywhere in a JSON document (the doctor's report), replaced.
pub(super) fn redact_json_keys(v: &mut Json, under_secret: bool) {
    match v {
        Json::String(s) if under_secret => *s = REDACTED.to_owned(),
        Json::Array(a) => a.iter_mut().for_each(|v| redact_json_keys(v, under_secret)),
        Json::Object(o) => {
            for (k, v) in o.iter_mut() {
                redact_json_keys(v, under_secret || is_secret_key(k));
            }
        }
        _ => {}
    }
}

/// A unit file with the values of secret keys (at any depth: `env.API_TOKEN`, an inline
/// table, an array under such a key) replaced, keeping the file as written otherwise: its
/// comments, layout and every other value; and the values it replaced. A secret value long
/// enough to be searched for is also replaced where the file repeats it (`--token <value>` in
/// `command`). An empty value hides nothing and is left as it is.
///
/// A file that is not valid TOML cannot be read key by key: from the first secret-looking
/// key on a line, the rest of the line after its `=` is replaced.
pub(super) fn redact_toml(text: &str) -> (String, Vec<String>) {
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        return redact_toml_lines(text);
    };
    let mut found = Vec::new();
    redact_toml_table(doc.as_table_mut(), false, &mut found);
    if found.is_empty() {
        return (text.to_owned(), found);
    }
    let mut long = Secrets::default();
    for v in &found {
        long.add(v);
    }
    (long.scrub(&doc.to_string()).into_owned(), found)
}

fn redact_toml_table(t: &mut toml_edit::Table, under_secret: bool, found: &mut Vec<String>) {
    for (key, item) in t.iter_mut() {
        redact_toml_item(item, under_secret || is_secret_key(key.get()), found);
    }
}

fn redact_toml_item(item: &mut toml_edit::Item, under_secret: bool, found: &mut Vec<String>) {
    match item {
        toml_edit::Item::Value(v) => redact_toml_value(v, under_secret, found),
        toml_edit::Item::Table(t) => redact_toml_table(t, under_secret, found),
        toml_edit::Item::ArrayOfTables(a) => a
            .iter_mut()
            .for_each(|t| redact_toml_table(t, under_secret, found)),
        toml_edit::Item::None => {}
    }
}

fn redact_toml_value(v: &mut toml_edit::Value, under_secret: bool, found: &mut Vec<String>) {
    match v {
        toml_edit::Value::String(s) if under_secret => {
            let value = s.value();
            if value.is_empty() || value == REDACTED {
                return;
            }
            found.push(value.clone());
            // The new value sits where the old one was: same spacing and comments around it.
            let decor = s.decor().clone();
            *v = toml_edit::Value::from(REDACTED);
            *v.decor_mut() = decor;
        }
        toml_edit::Value::Array(a) => a
            .iter_mut()
            .for_each(|v| redact_toml_value(v, under_secret, found)),
        toml_edit::Value::InlineTable(t) => {
            for (key, v) in t.iter_mut() {
                redact_toml_value(v, under_secret || is_secret_key(key.get()), found);
            }
        }
        _ => {}
    }
}

fn redact_toml_lines(text: &str) -> (String, Vec<String>) {
    let mut found = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let upper = body.to_ascii_uppercase();
        let at = SECRET_WORDS.iter().filter_map(|w| upper.find(w)).min();
        match at.and_then(|i| body[i..].find('=').map(|j| i + j + 1)) {
            Some(eq) => {
                let value = body[eq..].trim();
                let quoted = ['"', '\''].into_iter().find(|q| value.starts_with(*q));
                let inner = match quoted {
                    Some(q) => value[1..].split(q).next().unwrap_or(""),
                    None => value.split([',', '}', ' ']).next().unwrap_or(""),
                };
                if !inner.is_empty() {
                    found.push(inner.to_owned());
                }
                out.push_str(&body[..eq]);
                out.push_str(&format!(" \"{REDACTED}\""));
            }
            None => out.push_str(body),
        }
        out.push_str(end);
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys() {
        for k in [
            "API_TOKEN",
            "openai_api_key",
            "OPENCLAW_GATEWAY_TOKEN",
            "Db_Password",
            "CLIENT_SECRET",
            "KEYCHAIN",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "OLLAMA_HOST",
            "PATH",
            "HOME",
            "OLLAMA_KEEP_ALIVE",
            "NODE_OPTIONS",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn toml_values_are_redacted_in_place() {
        let text = "# the model server\n[exec]\ncommand = [\"/bin/x\", \"--token\", \"s3cret-value-1\"]\n\
                    env = { API_TOKEN = \"s3cret-value-1\", OLLAMA_HOST = \"127.0.0.1:11434\" }\n";
        let (out, found) = redact_toml(text);
        assert_eq!(found, vec!["s3cret-value-1".to_owned()]);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.starts_with("# the model server\n"), "{out}");
        assert!(out.contains("OLLAMA_HOST = \"127.0.0.1:11434\""), "{out}");
        let t: toml::Table = out.parse().unwrap();
        assert_eq!(t["exec"]["env"]["API_TOKEN"].as_str(), Some(REDACTED));

        let table = "[exec]\ncommand = [\"/bin/x\"]\n[exec.env]\nDB_PASSWORD = 'pw-value-22'\nUSER_NAME = \"me\"\n";
        let (out, _) = redact_toml(table);
        assert!(!out.contains("pw-value-22"), "{out}");
        assert!(out.contains("USER_NAME = \"me\""), "{out}");
    }

    #[test]
    fn short_and_empty_toml_values_are_redacted_only_where_they_are() {
        let text = "# keep me\n[exec]\ncommand = [\"/opt/ab1/bin/x\"]\nenv = { API_KEY = 'ab1', EMPTY_TOKEN = \"\", HOST = \"ab1x\" }\n";
        let (out, _) = redact_toml(text);
        assert_eq!(
            out,
            "# keep me\n[exec]\ncommand = [\"/opt/ab1/bin/x\"]\nenv = { API_KEY = \"<redacted>\", EMPTY_TOKEN = \"\", HOST = \"ab1x\" }\n"
        );
    }

    #[test]
    fn toml_values_with_escapes_are_redacted_in_place() {
        let text = "# keep me\n[exec]\ncommand = [\"/bin/x\"] # and me\nenv = { API_KEY = \"a\\u0062c-def-ghi\", HOST = \"h\\u0031\" }\n";
        let (out, found) = redact_toml(text);
        assert_eq!(found, vec!["abc-def-ghi".to_owned()]);
        assert_eq!(
            out,
            "# keep me\n[exec]\ncommand = [\"/bin/x\"] # and me\nenv = { API_KEY = \"<redacted>\", HOST = \"h\\u0031\" }\n"
        );
    }

    #[test]
    fn toml_secrets_in_tables_arrays_and_dotted_keys() {
        let text = "[exec]\ncommand = [\"/bin/x\"]\nenv.DB_PASSWORD = \"pw-1\"\n\n[[extra]]\napi_keys = [\"k-1\", \"k-2\"] # two\nname = \"k-1\"\n";
        let (out, found) = redact_toml(text);
        assert_eq!(found, ["pw-1", "k-1", "k-2"].map(String::from).to_vec());
        assert_eq!(
            out,
            "[exec]\ncommand = [\"/bin/x\"]\nenv.DB_PASSWORD = \"<redacted>\"\n\n[[extra]]\napi_keys = [\"<redacted>\", \"<redacted>\"] # two\nname = \"k-1\"\n",
            "short values are replaced under their key only"
        );
    }

    #[test]
    fn invalid_toml_is_redacted_by_line() {
        let text = "[exec\nenv = { API_TOKEN = \"tok-123456\", B = \"c\" }\nsecret_password=hunter22\nplain = 1\n";
        let (out, found) = redact_toml(text);
        assert!(
            !out.contains("tok-123456") && !out.contains("hunter22"),
            "{out}"
        );
        assert!(out.contains("plain = 1"), "{out}");
        assert!(found.contains(&"tok-123456".to_owned()));
        assert!(found.contains(&"hunter22".to_owned()));
    }

    #[test]
    fn secrets_are_scrubbed_in_every_escaped_form() {
        let mut s = Secrets::default();
        s.add("a\"b<c>&d-token");
        s.add("short");
        let text =
            r#"raw a"b<c>&d-token json a\"b<c>&d-token xml a&quot;b&lt;c&gt;&amp;d-token short"#;
        let out = s.scrub(text);
        assert!(!out.contains("d-token"), "{out}");
        assert!(
            out.contains("short"),
            "short values are only redacted by key: {out}"
        );
    }

    #[test]
    fn doctor_reports_lose_values_under_secret_keys() {
        let mut v = json!({"ok": false, "gateway": {"token": "abc", "tokenSet": true, "port": 18789},
                           "findings": [{"checkId": "x", "apiKeys": ["k1", "k2"]}]});
        redact_json_keys(&mut v, false);
        assert_eq!(v["gateway"]["token"], REDACTED);
        assert_eq!(v["gateway"]["tokenSet"], true);
        assert_eq!(v["gateway"]["port"], 18789);
        assert_eq!(v["findings"][0]["apiKeys"], json!([REDACTED, REDACTED]));
        assert_eq!(v["findings"][0]["checkId"], "x");
    }
}
