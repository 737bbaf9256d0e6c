//! RecBole's interval syntax for the interaction-count filters (`user_inter_num_interval`,
//! `item_inter_num_interval`): `[lo,hi)` with `[` / `(` for a closed / open lower end and `]` /
//! `)` for the upper end, `inf` for no bound, several intervals joined by `;` (a count passes if
//! it lies in any of them). `[5,inf)` is the 5-core condition.
//!
//! RecBole logs a warning and skips a malformed interval; here it is an error, so that a typo
//! cannot silently turn a filter off.

use std::fmt;

/// One interval of counts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    lo: f64,
    lo_closed: bool,
    hi: f64,
    hi_closed: bool,
}

impl Interval {
    fn contains(&self, n: f64) -> bool {
        let above = if self.lo_closed {
            n >= self.lo
        } else {
            n > self.lo
        };
        let below = if self.hi_closed {
            n <= self.hi
        } else {
            n < self.hi
        };
        above && below
    }
}

/// A union of intervals; a count passes if it lies in any of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervals {
    parts: Vec<Interval>,
}

impl Intervals {
    /// `[k,inf)`: at least `k` interactions (the k-core condition).
    pub fn at_least(k: usize) -> Intervals {
        Intervals {
            parts: vec![Interval {
                lo: k as f64,
                lo_closed: true,
                hi: f64::INFINITY,
                hi_closed: false,
            }],
        }
    }

    /// Parses RecBole's syntax (`[5,inf)`, `(0,100]`, `[1,3);[10,inf)`). The error is a plain
    /// message; the caller names the option it came from.
    pub fn parse(text: &str) -> Result<Intervals, String> {
        let parts = text
            .split(';')
            .map(|part| parse_one(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Intervals { parts })
    }

    pub fn contains(&self, count: usize) -> bool {
        self.parts.iter().any(|p| p.contains(count as f64))
    }

    /// Whether every count of at least 1 passes (every id present in the rows has at least one
    /// row), so the filter can be skipped.
    pub fn keeps_every_present_id(&self) -> bool {
        self.parts
            .iter()
            .any(|p| p.hi == f64::INFINITY && (p.lo < 1.0 || (p.lo == 1.0 && p.lo_closed)))
    }
}

fn parse_one(text: &str) -> Result<Interval, String> {
    let bad = |why: &str| format!("interval '{text}': {why}");
    let mut chars = text.chars();
    let (Some(open), Some(close)) = (chars.next(), chars.next_back()) else {
        return Err(bad("empty (expected e.g. [5,inf))"));
    };
    if !matches!(open, '[' | '(') || !matches!(close, ']' | ')') {
        return Err(bad("must start with [ or ( and end with ] or )"));
    }
    let inner: Vec<&str> = chars.as_str().split(',').collect();
    let [lo, hi] = inner[..] else {
        return Err(bad("expected two ends separated by one comma"));
    };
    let number = |s: &str| match s.trim().parse::<f64>() {
        Ok(x) if !x.is_nan() => Ok(x),
        _ => Err(bad(&format!("'{}' is not a number or inf", s.trim()))),
    };
    let (lo, hi) = (number(lo)?, number(hi)?);
    if lo > hi {
        return Err(bad("the lower end is above the upper end"));
    }
    Ok(Interval {
        lo,
        lo_closed: open == '[',
        hi,
        hi_closed: close == ']',
    })
}

impl fmt::Display for Intervals {
    /// RecBole's syntax again (`[5,inf)`), for `config.json` and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            let end = |x: f64| match x {
                f64::INFINITY => "inf".to_string(),
                f64::NEG_INFINITY => "-inf".to_string(),
                x => x.to_string(),
            };
            let (open, close) = (
                if p.lo_closed { '[' } else { '(' },
                if p.hi_closed { ']' } else { ')' },
            );
            let sep = if i == 0 { "" } else { ";" };
            write!(f, "{sep}{open}{},{}{close}", end(p.lo), end(p.hi))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_open_and_closed_and_unions() {
        let iv = Intervals::parse("[5,inf)").unwrap();
        assert!(!iv.contains(4) && iv.contains(5) && iv.contains(1_000_000));
        let iv = Intervals::parse("(2,4]").unwrap();
        let passing: Vec<usize> = (0..7).filter(|&n| iv.contains(n)).collect();
        assert_eq!(passing, vec![3, 4]);
        let iv = Intervals::parse("[1,2); [10, inf]").unwrap();
        let passing: Vec<usize> = (0..12).filter(|&n| iv.contains(n)).collect();
        assert_eq!(passing, vec![1, 10, 11]);
        assert_eq!(iv.to_string(), "[1,2);[10,inf]");
        assert_eq!(Intervals::at_least(5), Intervals::parse("[5,inf)").unwrap());
    }

    #[test]
    fn which_intervals_keep_everything() {
        for keeps in [
            "[0,inf)",
            "[1,inf)",
            "(0,inf)",
            "(0.5,inf)",
            "[3,4);[-inf,inf)",
        ] {
            assert!(
                Intervals::parse(keeps).unwrap().keeps_every_present_id(),
                "{keeps}"
            );
        }
        for filters in ["[2,inf)", "(1,inf)", "[0,100)", "[1,2]"] {
            assert!(
                !Intervals::parse(filters).unwrap().keeps_every_present_id(),
                "{filters}"
            );
        }
    }

    #[test]
    fn malformed_intervals_are_errors() {
        for bad in [
            "", "5", "[5,inf", "5,inf)", "[5;inf)", "[5,6,7)", "[x,3)", "[4,2)", "[nan,3)",
        ] {
            let err = Intervals::parse(bad).unwrap_err();
            assert!(err.starts_with("interval '"), "{bad}: {err}");
        }
    }
}
