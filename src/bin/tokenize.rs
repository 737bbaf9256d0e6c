//! `tokenize`: our tokenizer.json reader on JSON lines.
//!
//! cargo run --release --bin tokenize -- --tokenizer PATH/tokenizer.json [--decode [--skip-special]]
//!     encode: stdin lines {"text": "...", "added_tokens": [...]?}  -> stdout lines {"ids": [...]}
//!     decode: stdin lines {"ids": [...]}                           -> stdout lines {"text": "..."}
//!   A line with `added_tokens` is encoded by the file's tokenizer plus those tokens (added in
//!   order, ids after the file's largest), as in the fixture cases. A bad line gets
//!   {"error": "..."} on stdout (so output lines stay aligned with input lines), a message naming
//!   its line number on stderr, and the run exits with status 1 at the end.
//! cargo run --release --bin tokenize -- --tokenizer PATH --bench TEXT_FILE [--runs N] [--per-line]
//!     encodes the whole file (or each line apart) N times (fresh tokenizer each run, so the word cache starts cold)
//!     and prints the median throughput in MB/s.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use ilrec::cli::Flags;
use ilrec::tokenizer::Tokenizer;
use ilrec::{Error, Result};
use serde_json::{json, Value};

struct Args {
    tokenizer: String,
    decode: bool,
    skip_special: bool,
    bench: Option<String>,
    per_line: bool,
    runs: usize,
}

const USAGE: &str = "usage: tokenize --tokenizer PATH/tokenizer.json [--decode [--skip-special]] \
                     | --tokenizer PATH --bench TEXT_FILE [--runs N] [--per-line]";

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut a = Args {
        tokenizer: String::new(),
        decode: false,
        skip_special: false,
        bench: None,
        per_line: false,
        runs: 5,
    };
    let mut f = Flags::new(USAGE, args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--tokenizer" => a.tokenizer = f.value(flag)?,
            "--decode" => a.decode = true,
            "--skip-special" => a.skip_special = true,
            "--bench" => a.bench = Some(f.value(flag)?),
            "--per-line" => a.per_line = true,
            "--runs" => a.runs = f.positive(flag)?,
            other => return Err(f.error(format!("unknown argument {other:?}"))),
        }
    }
    if a.tokenizer.is_empty() {
        return Err(f.error("--tokenizer is required"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1).collect()).and_then(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tokenize: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns Ok(false) when some input lines failed.
fn run(args: Args) -> Result<bool> {
    let text =
        std::fs::read_to_string(&args.tokenizer).map_err(|e| Error::io(&args.tokenizer, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&args.tokenizer, format!("not valid JSON: {e}")))?;
    let base = Tokenizer::from_json(&json, &args.tokenizer)?;
    if let Some(path) = &args.bench {
        bench(&json, &args.tokenizer, path, args.runs, args.per_line)?;
        return Ok(true);
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut lines = LineProcessor {
        json: &json,
        origin: &args.tokenizer,
        base,
        extended: None,
    };
    let mut all_ok = true;
    for (index, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| Error::io("<stdin>", e))?;
        let result = if args.decode {
            lines.decode(&line, args.skip_special)
        } else {
            lines.encode(&line)
        };
        let reply = result.unwrap_or_else(|msg| {
            all_ok = false;
            eprintln!("tokenize: stdin line {}: {msg}", index + 1);
            json!({ "error": format!("line {}: {msg}", index + 1) })
        });
        writeln!(out, "{reply}").map_err(|e| Error::io("<stdout>", e))?;
    }
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    Ok(all_ok)
}

/// Per-line work; keeps the tokenizer extended with the last line's added tokens.
struct LineProcessor<'a> {
    json: &'a Value,
    origin: &'a str,
    base: Tokenizer,
    extended: Option<(Vec<String>, Tokenizer)>,
}

impl LineProcessor<'_> {
    fn encode(&mut self, line: &str) -> std::result::Result<Value, String> {
        let request: Value =
            serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let text = request
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or("expected a string field \"text\"")?;
        let added = match request.get("added_tokens") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => list
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|t| t.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or("\"added_tokens\" must be an array of strings")?,
        };
        if added.is_empty() {
            return Ok(json!({ "ids": self.base.encode(text) }));
        }
        // A fresh copy of the file's tokenizer plus these tokens, reused while lines repeat them.
        if self
            .extended
            .as_ref()
            .is_none_or(|(list, _)| *list != added)
        {
            let mut tokenizer =
                Tokenizer::from_json(self.json, self.origin).map_err(|e| e.to_string())?;
            tokenizer.add_tokens(&added, false);
            self.extended = Some((added, tokenizer));
        }
        let tokenizer = self.extended.as_ref().map_or(&self.base, |(_, t)| t);
        Ok(json!({ "ids": tokenizer.encode(text) }))
    }

    fn decode(&self, line: &str, skip_special: bool) -> std::result::Result<Value, String> {
        let request: Value =
            serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let ids = request
            .get("ids")
            .and_then(|ids| ids.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()))
                    .collect::<Option<Vec<u32>>>()
            })
            .ok_or("expected a field \"ids\" with an array of token ids (u32)")?;
        Ok(json!({ "text": self.base.decode(&ids, skip_special) }))
    }
}

/// Encode throughput on a text file: median over `runs`, each on a fresh tokenizer. The whole
/// file is one encode call, or (`per_line`) one call per line.
fn bench(json: &Value, origin: &str, path: &str, runs: usize, per_line: bool) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut seconds = Vec::with_capacity(runs);
    let mut tokens = 0;
    for _ in 0..runs {
        let tokenizer = Tokenizer::from_json(json, origin)?;
        let start = Instant::now();
        tokens = if per_line {
            text.lines().map(|line| tokenizer.encode(line).len()).sum()
        } else {
            tokenizer.encode(&text).len()
        };
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let mb = text.len() as f64 / 1e6;
    println!(
        "ours: {mb:.2} MB, {tokens} tokens, median of {runs}: {median:.3} s = {:.2} MB/s (runs: {})",
        mb / median,
        seconds.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}
