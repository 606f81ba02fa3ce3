//! Diagnostics: one error a person can act on, and the byte-offset to line/column mapping.
//!
//! Every stage that reads configuration (unit files, the graph) reports problems as
//! [`Diagnostic`]s, never as a bare string, so each one names its file, line, column and key,
//! says what was expected, and may carry a hint. Rendering is `path:line:col: message`, the
//! form editors and terminals turn into links.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The dotted key the problem is about (`exec.command`), when there is one.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem with a whole file or directory rather than a place in it.
    pub(crate) fn whole_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: 1,
            column: 1,
            key: None,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: message`, then the hint: every part [`escape`]d, since file names,
    /// keys and values come from the user and may hold newlines or terminal escapes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            escape(&self.file.to_string_lossy()),
            self.line,
            self.column,
            escape(&self.message)
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", escape(hint))?;
        }
        Ok(())
    }
}

/// `text` with every control character (newline, tab, ESC, ...) and every invisible
/// direction override written as a Rust escape (`\n`, `\u{1b}`), so that text a user
/// controls, embedded in a message, stays on its line and cannot drive the terminal.
/// Everything else, backslashes and quotes included, is left as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the bidirectional formatting characters that reorder what a
/// terminal shows (https://www.unicode.org/reports/tr9/#Explicit_Directional_Formatting_Characters).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Maps byte offsets of one source text to 1-based line and column numbers.
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, line_starts }
    }

    /// (line, column), both 1-based; the column counts characters, not bytes.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    pub(crate) fn diagnostic(
        &self,
        file: &Path,
        span: Range<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            key: key.map(str::to_owned),
            message: message.into(),
            hint: None,
        }
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints: at most 2
/// edits, or a third of the candidate's length for long names; the first of equals wins.
pub(crate) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let map = SourceMap::new("a = 1\nbé = 2\n");
        assert_eq!(map.position(0), (1, 1));
        assert_eq!(map.position(6), (2, 1));
        // 'é' is two bytes; the '=' after it is the 4th character of line 2.
        assert_eq!(map.position(10), (2, 4));
        assert_eq!(map.position(999), (3, 1));
    }

    #[test]
    fn rendering_escapes_control_characters_everywhere() {
        let d = Diagnostic::whole_file("/u/a\nb.toml", "key `x\u{1b}[31m` \"q\\\"")
            .with_hint("tab\there, \u{202e}reversed");
        assert_eq!(
            d.to_string(),
            "/u/a\\nb.toml:1:1: key `x\\u{1b}[31m` \"q\\\"\n  hint: tab\\there, \\u{202e}reversed"
        );
        assert!(matches!(escape("plain é"), Cow::Borrowed("plain é")));
    }

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["command", "env", "working-directory"];
        assert_eq!(closest("comand", &keys), Some("command"));
        assert_eq!(closest("workdir", &keys), None);
        assert_eq!(
            closest("working_directory", &keys),
            Some("working-directory")
        );
    }
}
