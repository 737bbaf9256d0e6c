//! `recommend`: the top-K items a trained stage of a `train` run recommends, for one user (their
//! history as the test split saw it), for a history given by titles or item ids, or for every
//! user at once into a JSON-lines file. The library behind it is
//! `ilrec::pipeline::recommender::Recommender`; run `recommend --help` for the options.
//!
//! Errors (not a run folder, a stage not trained, an unknown user or title, an empty history,
//! a bad top-K) print one line with a hint and exit with status 2, before any beam search.

use ilrec::cli::{self, Flags};
use ilrec::ilrec::explain::PositionView;
use ilrec::pipeline::data;
use ilrec::pipeline::recommender::{test_sample, Recommendation, Recommender};
use ilrec::pipeline::saved_run::SavedRun;
use ilrec::rec::item_lookup::ItemLookup;
use ilrec::rec::{Dataset, Split};
use ilrec::{Error, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "see recommend --help";

const HELP: &str = "recommend: top-K items from a trained stage of a train run

Usage: recommend --run DIR [--stage NAME] (--user ID | --history \"TITLE, TITLE\" | --history-ids ID,ID)
                 [--top-k K] [--json] [--exclude-history] [--explain]
       recommend --run DIR [--stage NAME] --users all --out FILE.jsonl [--top-k K] [--exclude-history]

  --run DIR             the run folder train wrote (runs/<name>, or its --out DIR)
  --stage NAME          the trained stage: ilrec, sft, or an ablation name / folder [ilrec]
  --user ID             a user of the data set (its own id, e.g. userId): their history as the
                        test split saw it (every interaction but the held-out last one, at most
                        20, the prompt showing the run's --max-history); the held-out item is shown
  --history TEXT        a history as titles, oldest first, separated by commas (titles that hold
                        commas are fine); matched exactly, then ignoring case
  --history-ids LIST    a history as the data set's item ids (e.g. movieId), oldest first: 1,5,9
  --users all           every test user, one JSON line each into --out:
                        {\"user\", \"items\": [ids], \"scores\": [log-probabilities], \"held_out\"}
  --out FILE            where --users all writes
  --top-k K             how many items [10]; the search uses the run's beam width (or K if
                        larger), so the top K are the first K of the evaluation's list
  --json                one JSON object instead of text
  --exclude-history     never recommend a history item (the search widens by one beam per
                        history item, then drops them)
  --explain             for the first item, the logit-lens view of each of its tokens: the rank
                        each lens layer gives the chosen token, the candidates it ranks higher,
                        and the self-hard negatives ILRec would train against there
  --help                this text

Exit status: 0 on success, 2 on bad input.
";

/// Whose recommendations.
enum Who {
    User(String),
    Titles(String),
    Ids(String),
    AllUsers(PathBuf),
}

struct Args {
    run: PathBuf,
    stage: String,
    who: Who,
    top_k: usize,
    json: bool,
    exclude_history: bool,
    explain: bool,
}

fn main() -> ExitCode {
    cli::main("recommend", HELP, |args| run(&parse_args(args)?))
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut f = Flags::new(USAGE, args);
    let (mut run, mut stage, mut top_k) = (None, "ilrec".to_string(), 10);
    let (mut who, mut users_all, mut out) = (Vec::new(), false, None);
    let (mut json, mut exclude_history, mut explain) = (false, false, false);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--run" => run = Some(PathBuf::from(f.value(flag)?)),
            "--stage" => stage = f.value(flag)?,
            "--user" => who.push(Who::User(f.value(flag)?)),
            "--history" => who.push(Who::Titles(f.value(flag)?)),
            "--history-ids" => who.push(Who::Ids(f.value(flag)?)),
            "--users" => {
                if f.value(flag)? != "all" {
                    return Err(f.error("--users takes `all` (one user: --user ID)"));
                }
                users_all = true;
            }
            "--out" => out = Some(PathBuf::from(f.value(flag)?)),
            "--top-k" => top_k = f.positive(flag)?,
            "--json" => json = true,
            "--exclude-history" => exclude_history = true,
            "--explain" => explain = true,
            other => return Err(f.unknown(other)),
        }
    }
    let run = run.ok_or_else(|| f.error("--run DIR is required"))?;
    if let (true, Some(out)) = (users_all, &out) {
        who.push(Who::AllUsers(out.clone()));
    } else if users_all || out.is_some() {
        return Err(f.error("--users all and --out FILE go together"));
    }
    let who = match (who.pop(), who.is_empty()) {
        (Some(w), true) => w,
        _ => {
            return Err(f.error("give exactly one of --user, --history, --history-ids, --users all"))
        }
    };
    check_request(&who, explain, json)?;
    Ok(Args {
        run,
        stage,
        who,
        top_k,
        json,
        exclude_history,
        explain,
    })
}

/// Bad combinations and empty histories, caught before anything is loaded.
fn check_request(who: &Who, explain: bool, json: bool) -> Result<()> {
    let empty = |list: &str| list.split(',').all(|s| s.trim().is_empty());
    match who {
        Who::Titles(t) | Who::Ids(t) if empty(t) => Err(Error::config(
            "the history is empty",
            "name at least one item, e.g. --history \"Toy Story (1995)\" or --history-ids 1",
        )),
        Who::AllUsers(_) if explain || json => Err(Error::config(
            "--explain and --json are for one history; --users all writes JSON lines already",
            "drop --explain / --json, or ask for one --user",
        )),
        _ => Ok(()),
    }
}

fn run(args: &Args) -> Result<()> {
    // Cheap checks first (a run folder, a trained stage, the request against the data set);
    // only then the tokenizer, the item trie and the model.
    let saved = SavedRun::open(&args.run)?;
    let stage = saved.stage(&args.stage)?;
    let (dataset, split) = data::load_split(&saved.config)?;
    if args.top_k > dataset.num_items() {
        return Err(Error::config(
            format!(
                "--top-k {}: the data set has {} items",
                args.top_k,
                dataset.num_items()
            ),
            format!("ask for 1..={} items", dataset.num_items()),
        ));
    }
    let request = resolve(&args.who, &dataset, &split)?;
    let mut rec = Recommender::from_data(saved, stage, (dataset, split))?;
    rec.exclude_history = args.exclude_history;
    match (&args.who, request) {
        (Who::AllUsers(out), _) => all_users(&rec, args.top_k, out),
        (_, Some(request)) => one_history(&rec, &request, args),
        (_, None) => unreachable!("resolve answers every single-history request"),
    }
}

/// One history to recommend after (dense ids); for `--user`, the user and the held-out item.
struct Request {
    history: Vec<u32>,
    user: Option<String>,
    held_out: Option<u32>,
}

/// The history `who` names (None for `--users all`).
fn resolve(who: &Who, dataset: &Dataset, split: &Split) -> Result<Option<Request>> {
    let lookup = ItemLookup::new(dataset);
    let plain = |history| Request {
        history,
        user: None,
        held_out: None,
    };
    Ok(Some(match who {
        Who::User(user) => {
            let sample = test_sample(dataset, split, user)?;
            Request {
                history: sample.history.clone(),
                user: Some(user.trim().to_string()),
                held_out: Some(sample.target),
            }
        }
        Who::Titles(text) => plain(lookup.by_titles(text)?),
        Who::Ids(list) => plain(lookup.by_raw_ids(list)?),
        Who::AllUsers(_) => return Ok(None),
    }))
}

fn one_history(rec: &Recommender, request: &Request, args: &Args) -> Result<()> {
    let (history, held_out) = (&request.history, request.held_out);
    let recs = rec.recommend(history, args.top_k)?;
    let explained = match (args.explain, recs.first()) {
        (true, Some(first)) => Some(rec.explain(history, first.item, 5)?),
        _ => None,
    };
    let raw = |i: u32| rec.dataset.items[i as usize].raw_id.clone();
    if args.json {
        let value = json!({
            "run": rec.run.dir.display().to_string(), "stage": rec.stage.name,
            "user": request.user, "history": history.iter().map(|&i| raw(i)).collect::<Vec<_>>(),
            "held_out": held_out.map(raw), "exclude_history": rec.exclude_history,
            "recommendations": recs.iter().map(|r| json!({
                "item": r.item, "id": r.raw_id, "title": r.title, "log_prob": r.log_prob,
            })).collect::<Vec<_>>(),
            "explain": explained.as_ref().map(|views| explain_json(rec, views)),
        });
        println!("{value}");
        return Ok(());
    }
    print_header(rec, history, held_out, request.user.as_deref());
    print_recommendations(&recs, held_out);
    if let (Some(views), Some(first)) = (&explained, recs.first()) {
        print_explanation(rec, first, views);
    }
    Ok(())
}

fn print_header(rec: &Recommender, history: &[u32], held_out: Option<u32>, user: Option<&str>) {
    let title = |i: u32| rec.dataset.items[i as usize].title.clone();
    let shown = rec.run.config.max_history.min(history.len());
    let recent: Vec<String> = history[history.len() - shown..]
        .iter()
        .map(|&i| title(i))
        .collect();
    match user {
        Some(u) => println!(
            "user {u}: {} history items; the prompt shows the last {shown}:",
            history.len()
        ),
        None => println!(
            "history of {} items; the prompt shows the last {shown}:",
            history.len()
        ),
    }
    println!("  {}", recent.join(" | "));
    if let Some(t) = held_out {
        println!(
            "held-out test item: {} (id {})",
            title(t),
            rec.dataset.items[t as usize].raw_id
        );
    }
    println!(
        "stage {:?} of {}{}:",
        rec.stage.name,
        rec.run.dir.display(),
        if rec.exclude_history {
            ", history items excluded"
        } else {
            ""
        }
    );
}

fn print_recommendations(recs: &[Recommendation], held_out: Option<u32>) {
    let width = recs
        .iter()
        .map(|r| r.title.chars().count())
        .max()
        .unwrap_or(0);
    for (rank, r) in recs.iter().enumerate() {
        let mark = if Some(r.item) == held_out {
            "  <- held-out item"
        } else {
            ""
        };
        println!(
            "{:>4}. {:<width$}  id {:<8} log p {:>9.4}{mark}",
            rank + 1,
            r.title,
            r.raw_id,
            r.log_prob
        );
    }
}

/// The logit-lens view of the first recommendation, one block per response token.
fn print_explanation(rec: &Recommender, first: &Recommendation, views: &[PositionView]) {
    let show = |id: u32| format!("{:?}", rec.token_text(id));
    let top = rec.run.num_blocks;
    println!(
        "\nwhy {:?}: each token of its response through the logit lens",
        first.title
    );
    for (j, v) in views.iter().enumerate() {
        println!(
            "token {} of {}: {} (log p {:.4}, among {} candidates)",
            j + 1,
            views.len(),
            show(v.chosen),
            v.log_prob,
            v.candidates
        );
        for l in &v.layers {
            let mark = if l.layer == top { "*" } else { " " };
            let above: Vec<String> = l
                .above
                .iter()
                .map(|&(t, z)| format!("{} {z:.2}", show(t)))
                .collect();
            let above = if above.is_empty() {
                "-".to_string()
            } else {
                above.join(", ")
            };
            println!(
                "  layer {:>3}{mark} | logit {:>7.2}, rank {:>4} | ranked above it: {above}",
                l.layer, l.chosen_logit, l.rank
            );
        }
        let negatives: Vec<String> = v
            .negatives
            .tokens
            .iter()
            .zip(&v.negatives.weights)
            .map(|(&t, w)| format!("{} (w {w:.2})", show(t)))
            .collect();
        let negatives = if negatives.is_empty() {
            "none".to_string()
        } else {
            negatives.join(", ")
        };
        println!("  self-hard negatives: {negatives}");
    }
    println!("(* = layer {top}, the model's output; negatives: candidates whose lens-ensemble logit is at least the final logit of the chosen token minus the margin)");
}

fn explain_json(rec: &Recommender, views: &[PositionView]) -> Value {
    let views: Vec<Value> = views
        .iter()
        .map(|v| {
            let layers: Vec<Value> = v.layers.iter().map(|l| json!({
                "layer": l.layer, "logit": l.chosen_logit, "rank": l.rank,
                "above": l.above.iter().map(|&(t, z)| json!([t, rec.token_text(t), z])).collect::<Vec<_>>(),
            })).collect();
            json!({
                "token": v.chosen, "text": rec.token_text(v.chosen), "log_prob": v.log_prob,
                "candidates": v.candidates,
                "layers": layers, "negatives": v.negatives.tokens, "weights": v.negatives.weights,
            })
        })
        .collect();
    Value::Array(views)
}

/// `--users all`: every test user's top K, one JSON line each.
fn all_users(rec: &Recommender, k: usize, out: &Path) -> Result<()> {
    let samples = &rec.split.test;
    let histories: Vec<Vec<u32>> = samples.iter().map(|s| s.history.clone()).collect();
    let file = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
    let lists = rec.recommend_all(&histories, k)?;
    let mut w = std::io::BufWriter::new(file);
    let raw = |i: u32| rec.dataset.items[i as usize].raw_id.clone();
    for (sample, recs) in samples.iter().zip(&lists) {
        let line = json!({
            "user": rec.dataset.users[sample.user as usize],
            "items": recs.iter().map(|r| r.raw_id.clone()).collect::<Vec<_>>(),
            "scores": recs.iter().map(|r| r.log_prob).collect::<Vec<_>>(),
            "held_out": raw(sample.target),
        });
        writeln!(w, "{line}").map_err(|e| Error::io(out, e))?;
    }
    w.flush().map_err(|e| Error::io(out, e))?;
    println!(
        "recommend: top {k} of {} users written to {}",
        samples.len(),
        out.display()
    );
    Ok(())
}
