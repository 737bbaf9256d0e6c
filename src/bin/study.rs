//! `study`: runs a grid of data sets x methods x seeds through the ILRec pipeline, one run
//! folder per cell, resumable cell by cell, and reports mean +- std over seeds with paired
//! bootstrap intervals (`ilrec::study`; `study --help` for the options). The report (markdown)
//! is the last thing on stdout.

use ilrec::cli::wants_help;
use ilrec::study::{flags, run_study};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if wants_help(&args) {
        print!("{}", flags::HELP);
        return;
    }
    match flags::parse(args).and_then(|s| run_study(&s)) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("study: error: {e}");
            std::process::exit(2);
        }
    }
}
