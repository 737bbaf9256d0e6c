//! The one flag parser every binary uses (our own, no crate): `--name value` pairs and bare
//! switches, each value parsed with an error that names the flag and points at `--help`.

use crate::{Error, Result};
use std::process::ExitCode;

/// Walks the command line flag by flag.
pub struct Flags {
    args: std::vec::IntoIter<String>,
    /// The hint every error carries (`see train --help`, or a usage line).
    hint: String,
}

impl Flags {
    /// Over `args` (without the program name); errors carry `hint`.
    pub fn new(hint: impl Into<String>, args: Vec<String>) -> Flags {
        Flags {
            args: args.into_iter(),
            hint: hint.into(),
        }
    }

    /// The next flag (or positional argument), None at the end.
    pub fn next_flag(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value after `flag`, or an error if the command line ends there.
    pub fn value(&mut self, flag: &str) -> Result<String> {
        self.args
            .next()
            .ok_or_else(|| Error::config(format!("{flag} needs a value"), self.hint.clone()))
    }

    /// The value after `flag`, parsed as a number (or anything `FromStr`).
    pub fn num<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T> {
        let text = self.value(flag)?;
        text.parse().map_err(|_| {
            Error::config(
                format!("{flag} {text}: not a valid value"),
                self.hint.clone(),
            )
        })
    }

    /// The value after `flag` as a whole number of at least 1 (counts, sizes, threads).
    pub fn positive(&mut self, flag: &str) -> Result<usize> {
        let n: usize = self.num(flag)?;
        if n == 0 {
            return Err(Error::config(
                format!("{flag} 0: must be at least 1"),
                self.hint.clone(),
            ));
        }
        Ok(n)
    }

    /// An error about the command line as a whole (a missing required flag, a bad combination).
    pub fn error(&self, msg: impl Into<String>) -> Error {
        Error::config(msg, self.hint.clone())
    }

    /// The error for a flag the binary does not know.
    pub fn unknown(&self, flag: &str) -> Error {
        Error::config(format!("unknown option `{flag}`"), self.hint.clone())
    }
}

/// Whether `--help` or `-h` is on the command line.
pub fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// The `main` of a binary: with `--help` / `-h` prints `help` and exits 0; otherwise calls `run`
/// with the arguments (without the program name) and, on an error, prints the one line
/// `NAME: error: ...` and exits with status 2.
pub fn main(name: &str, help: &str, run: impl FnOnce(Vec<String>) -> Result<()>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if wants_help(&args) {
        print!("{help}");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_numbers_and_errors() {
        let args = ["--n", "3", "--x", "abc", "--last"]
            .map(String::from)
            .to_vec();
        let mut f = Flags::new("see t --help", args);
        assert_eq!(f.next_flag().as_deref(), Some("--n"));
        assert_eq!(f.num::<usize>("--n").unwrap(), 3);
        assert_eq!(f.next_flag().as_deref(), Some("--x"));
        let err = f.num::<f32>("--x").unwrap_err().to_string();
        assert!(err.contains("--x abc"), "{err}");
        assert_eq!(f.next_flag().as_deref(), Some("--last"));
        assert!(f
            .value("--last")
            .unwrap_err()
            .to_string()
            .contains("needs a value"));
        assert_eq!(f.next_flag(), None);
    }

    #[test]
    fn positive_refuses_zero_and_negatives() {
        let args = ["--a", "0", "--b", "-1", "--c", "4"]
            .map(String::from)
            .to_vec();
        let mut f = Flags::new("see t --help", args);
        f.next_flag();
        assert!(f
            .positive("--a")
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        f.next_flag();
        assert!(f.positive("--b").is_err());
        f.next_flag();
        assert_eq!(f.positive("--c").unwrap(), 4);
    }
}
