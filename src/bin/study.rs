//! `study`: runs a grid of data sets x methods x seeds through the ILRec pipeline, one run
//! folder per cell, resumable cell by cell, and reports mean +- std over seeds with paired
//! bootstrap intervals (`ilrec::study`; `study --help` for the options). The report (markdown)
//! is the last thing on stdout.

use ilrec::cli;
use ilrec::study::{flags, run_study};
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main("study", flags::HELP, |args| {
        print!("{}", run_study(&flags::parse(args)?)?);
        Ok(())
    })
}
