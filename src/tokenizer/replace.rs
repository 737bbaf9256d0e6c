//! The `Replace` pattern of tokenizer.json (a normalizer and a decoder): every non-overlapping,
//! leftmost match of a pattern is replaced by a fixed string.
//!
//! The pattern is `{"String": s}` (a literal) or `{"Regex": r}` (an Oniguruma regex in HF). We do
//! not embed a regex engine; we implement the regex forms that real tokenizers use and refuse the
//! rest by name:
//! - a literal without regex syntax, or with escaped characters (`\.`, `\\`, ...);
//! - one character class repeated: `X+`, `X{n,}`, `X{n}`, `X{n,m}`, where X is a literal
//!   character, an escaped one, or `\s` (Unicode White_Space). This covers SentencePiece
//!   conversions (`" {2,}"` -> `"▁"`) and whitespace collapsing (`\s+` -> `" "`).

use crate::{Error, Result};

/// One character class of a regex atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atom {
    Char(char),
    /// `\s`
    Space,
}

impl Atom {
    fn matches(self, c: char) -> bool {
        match self {
            Atom::Char(a) => a == c,
            Atom::Space => c.is_whitespace(),
        }
    }
}

/// A pattern we can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Literal(String),
    /// `atom{min,max}` (max = None for unbounded), greedy.
    Repeat {
        atom: Atom,
        min: usize,
        max: Option<usize>,
    },
}

/// The regex forms we implement, for messages.
pub const SUPPORTED_REGEX: &str =
    "a literal (escapes allowed), or one character or \\s followed by +, {n}, {n,} or {n,m}";

impl Pattern {
    /// Parses `{"String": s}` or `{"Regex": r}`; `what` names the component in errors.
    pub fn from_json(
        value: Option<&serde_json::Value>,
        what: &str,
        origin: &str,
    ) -> Result<Pattern> {
        let value = value
            .ok_or_else(|| Error::format(origin, format!("{what}: field `pattern` is missing")))?;
        if let Some(s) = value.get("String").and_then(|s| s.as_str()) {
            if s.is_empty() {
                return Err(Error::format(
                    origin,
                    format!("{what}: the pattern string is empty"),
                ));
            }
            return Ok(Pattern::Literal(s.to_string()));
        }
        if let Some(r) = value.get("Regex").and_then(|r| r.as_str()) {
            return parse_regex(r).ok_or_else(|| {
                Error::format(
                    origin,
                    format!("{what}: regex {r:?} is not supported (supported: {SUPPORTED_REGEX})"),
                )
            });
        }
        Err(Error::format(
            origin,
            format!("{what}: pattern {value} is neither {{\"String\": ..}} nor {{\"Regex\": ..}}"),
        ))
    }

    /// Length in bytes of the match starting at byte `pos` of `text`, if there is one.
    fn match_at(&self, text: &str, pos: usize) -> Option<usize> {
        match self {
            Pattern::Literal(s) => text[pos..].starts_with(s.as_str()).then_some(s.len()),
            Pattern::Repeat { atom, min, max } => {
                let mut count = 0;
                let mut len = 0;
                for c in text[pos..].chars() {
                    if max.is_some_and(|m| count == m) || !atom.matches(c) {
                        break;
                    }
                    count += 1;
                    len += c.len_utf8();
                }
                (count >= *min && len > 0).then_some(len)
            }
        }
    }

    /// `text` with every leftmost, non-overlapping match replaced by `content`; None when there
    /// is no match (so callers can keep the borrowed text).
    pub fn replace_all(&self, text: &str, content: &str) -> Option<String> {
        let mut out = String::new();
        let mut copied = 0; // text[..copied] is already in `out`
        let mut pos = 0;
        while pos < text.len() {
            match self.match_at(text, pos) {
                Some(len) => {
                    out.push_str(&text[copied..pos]);
                    out.push_str(content);
                    pos += len;
                    copied = pos;
                }
                None => pos += text[pos..].chars().next().map_or(1, char::len_utf8),
            }
        }
        if copied == 0 && out.is_empty() {
            return None;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }
}

/// Characters that have a meaning in a regex and must be escaped to stand for themselves.
const META: &str = r"\.^$|?*+()[]{}";

/// Parses the regex forms listed in the module docs.
fn parse_regex(regex: &str) -> Option<Pattern> {
    let mut atoms = Vec::new();
    let mut chars = regex.chars().peekable();
    while let Some(c) = chars.next() {
        let atom = match c {
            '\\' => match chars.next()? {
                's' => Atom::Space,
                e if META.contains(e) || e == '/' || e == '-' => Atom::Char(e),
                _ => return None, // \d, \w, \p{..}, \n ...: not implemented
            },
            '+' | '{' => {
                let atom = match atoms.as_slice() {
                    [only] => *only,
                    _ => return None, // a quantifier on anything but one atom
                };
                let quantifier: String = std::iter::once(c).chain(chars.by_ref()).collect();
                let (min, max) = parse_quantifier(&quantifier)?;
                return Some(Pattern::Repeat { atom, min, max });
            }
            c if META.contains(c) => return None,
            c => Atom::Char(c),
        };
        atoms.push(atom);
    }
    // No quantifier: a literal, unless it holds a class.
    let literal: Option<String> = atoms
        .iter()
        .map(|a| match a {
            Atom::Char(c) => Some(*c),
            Atom::Space => None,
        })
        .collect();
    match literal {
        Some(s) if !s.is_empty() => Some(Pattern::Literal(s)),
        _ if atoms.len() == 1 => Some(Pattern::Repeat {
            atom: atoms[0],
            min: 1,
            max: Some(1),
        }),
        _ => None,
    }
}

/// `+`, `{n}`, `{n,}` or `{n,m}` (the whole rest of the regex) as (min, max).
fn parse_quantifier(q: &str) -> Option<(usize, Option<usize>)> {
    if q == "+" {
        return Some((1, None));
    }
    let inner = q.strip_prefix('{')?.strip_suffix('}')?;
    let (min, max) = match inner.split_once(',') {
        None => {
            let n = inner.parse().ok()?;
            (n, Some(n))
        }
        Some((n, "")) => (n.parse().ok()?, None),
        Some((n, m)) => (n.parse().ok()?, Some(m.parse().ok()?)),
    };
    let valid = min > 0 && max.is_none_or(|m| m >= min);
    valid.then_some((min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(r: &str) -> Option<Pattern> {
        parse_regex(r)
    }

    #[test]
    fn literal_and_repeat_replacements() {
        let space = Pattern::Literal(" ".into());
        assert_eq!(space.replace_all("a b  c", "▁").as_deref(), Some("a▁b▁▁c"));
        assert_eq!(space.replace_all("abc", "▁"), None);
        let runs = regex(" {2,}").unwrap();
        assert_eq!(
            runs.replace_all("a b  c   d", "▁").as_deref(),
            Some("a b▁c▁d")
        );
        let ws = regex(r"\s+").unwrap();
        assert_eq!(ws.replace_all("a \t\nb", " ").as_deref(), Some("a b"));
        // {2}: runs of five spaces are two matches and a single space left over.
        let two = regex(" {2}").unwrap();
        assert_eq!(two.replace_all("a     b", "_").as_deref(), Some("a__ b"));
        assert_eq!(regex(r"\.\.\.").unwrap(), Pattern::Literal("...".into()));
    }

    #[test]
    fn other_regexes_are_refused() {
        for r in [
            r"\d+", "[a-z]+", "a|b", "ab+", "(x)", "a*", " {0,}", "x{3,2}", "",
        ] {
            assert_eq!(regex(r), None, "{r}");
        }
        let err = Pattern::from_json(
            Some(&serde_json::json!({"Regex": "[0-9]+"})),
            "normalizer Replace",
            "t.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.json") && err.contains("[0-9]+") && err.contains("supported"),
            "{err}"
        );
    }
}
