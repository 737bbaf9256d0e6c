//! What a study runs: data sets x seeds x methods, the evaluation protocols, and the `train`
//! options every cell shares (plus any of one data set's own, e.g. `--kcore 0` for the Amazon
//! sets). From the command line, a JSON file (`--grid FILE`), or both (the command line wins;
//! its train options come after the file's).
//!
//! ```json
//! {"datasets": ["data/ml-latest-small",
//!               {"path": "../shared/data/amazon18-office-products", "train_args": ["--kcore", "0"]}],
//!  "seeds": [0, 1, 2],
//!  "methods": ["popularity", "sasrec", "sft", "ilrec", "ablations", "sequential"],
//!  "protocols": ["all-items", "exclude-history"],
//!  "train_args": ["--train-samples", "20000", "--test-users", "1000"]}
//! ```

use super::select::SearchSpace;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::flags;
use crate::pipeline::variants::SEQUENTIAL;
use crate::rec::Protocol;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A row of the study: a baseline, SFT, ILRec, an ablation of ILRec, or ILRec trained with the
/// sequential schedule. One cell (a data set and a seed) trains every one of them from one
/// SFT warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Popularity,
    Sasrec,
    Sft,
    Ilrec,
    WithoutCpo,
    WithoutCrr,
    WithoutCpd,
    FinalLayerCpd0,
    FinalLayerCpdKept,
    Sequential,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 10] = [
        Method::Popularity,
        Method::Sasrec,
        Method::Sft,
        Method::Ilrec,
        Method::WithoutCpo,
        Method::WithoutCrr,
        Method::WithoutCpd,
        Method::FinalLayerCpd0,
        Method::FinalLayerCpdKept,
        Method::Sequential,
    ];

    /// The short name of flags and `results.jsonl`.
    pub fn key(self) -> &'static str {
        match self {
            Method::Popularity => "popularity",
            Method::Sasrec => "sasrec",
            Method::Sft => "sft",
            Method::Ilrec => "ilrec",
            Method::WithoutCpo => "wo-cpo",
            Method::WithoutCrr => "wo-crr",
            Method::WithoutCpd => "wo-cpd",
            Method::FinalLayerCpd0 => "final-cpd0",
            Method::FinalLayerCpdKept => "final-cpd-kept",
            Method::Sequential => "sequential",
        }
    }

    /// The method's row name in the pipeline (`pipeline::variants`, `train`'s table).
    pub fn row(self) -> &'static str {
        match self {
            Method::Popularity => "popularity",
            Method::Sasrec => "sasrec",
            Method::Sft => "sft",
            Method::Ilrec => "ilrec",
            Method::WithoutCpo => "ilrec w/o cpo",
            Method::WithoutCrr => "ilrec w/o crr",
            Method::WithoutCpd => "ilrec w/o cpd",
            Method::FinalLayerCpd0 => "final-layer negatives, CPD 0 (S = {L})",
            Method::FinalLayerCpdKept => "final-layer negatives, CPD kept",
            Method::Sequential => SEQUENTIAL,
        }
    }

    /// The name tables and charts show.
    pub fn label(self) -> &'static str {
        match self {
            Method::Popularity => "popularity",
            Method::Sasrec => "SASRec",
            Method::Sft => "SFT",
            Method::Ilrec => "ILRec",
            Method::WithoutCpo => "ILRec w/o CPO",
            Method::WithoutCrr => "ILRec w/o CRR",
            Method::WithoutCpd => "ILRec w/o CPD",
            Method::FinalLayerCpd0 => "final-layer negatives, CPD 0",
            Method::FinalLayerCpdKept => "final-layer negatives, CPD kept",
            Method::Sequential => "ILRec sequential",
        }
    }

    /// Trained by the pipeline's `--ablation` (all five together, from the same warm-up).
    pub fn is_ablation(self) -> bool {
        matches!(
            self,
            Method::WithoutCpo
                | Method::WithoutCrr
                | Method::WithoutCpd
                | Method::FinalLayerCpd0
                | Method::FinalLayerCpdKept
        )
    }

    pub fn from_key(key: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.key() == key)
            .ok_or_else(|| {
                let keys: Vec<&str> = Method::ALL.iter().map(|m| m.key()).collect();
                Error::config(
                    format!("method `{key}`: unknown"),
                    format!("methods: {}, or `ablations`, `all`", keys.join(", ")),
                )
            })
    }

    /// A list like `sft,ilrec,ablations` (`ablations` = the five, `all` = every method), in
    /// table order without repeats.
    pub fn parse_list(words: &[String]) -> Result<Vec<Method>> {
        let mut out = Vec::new();
        for w in words {
            match w.as_str() {
                "all" => out.extend(Method::ALL),
                "ablations" => out.extend(Method::ALL.into_iter().filter(|m| m.is_ablation())),
                key => out.push(Method::from_key(key)?),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A data set of the grid: its folder and the train options of its cells alone (after the
/// shared ones).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub path: PathBuf,
    pub train_args: Vec<String>,
}

impl DataSpec {
    pub fn new(path: PathBuf) -> DataSpec {
        DataSpec {
            path,
            train_args: Vec::new(),
        }
    }

    /// Its folder's name (`data/ml-latest-small` -> `ml-latest-small`): names cells and rows.
    pub fn name(&self) -> String {
        dataset_name(&self.path)
    }

    /// `"path"` or `{"path": "...", "train_args": [...]}`.
    fn from_json(v: &Value) -> Option<DataSpec> {
        if let Some(path) = v.as_str() {
            return Some(DataSpec::new(PathBuf::from(path)));
        }
        let args = match v.get("train_args") {
            None => Vec::new(),
            Some(a) => a
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(String::from))
                .collect::<Option<_>>()?,
        };
        Some(DataSpec {
            path: PathBuf::from(v.get("path")?.as_str()?),
            train_args: args,
        })
    }
}

/// The whole grid.
#[derive(Clone, Debug)]
pub struct Grid {
    pub datasets: Vec<DataSpec>,
    pub seeds: Vec<u64>,
    pub methods: Vec<Method>,
    pub protocols: Vec<Protocol>,
    /// `train` options every cell shares (after the study's own default `--valid-users 0`).
    pub train_args: Vec<String>,
    /// Selection on validation first (`--select`), over this space.
    pub select: Option<SearchSpace>,
}

/// `train` flags a study sets itself, per cell, and so refuses among the shared options.
const STUDY_OWNED: [(&str, &str); 7] = [
    ("--data", "--datasets"),
    ("--seed", "--seeds"),
    ("--out", "study's --out"),
    ("--resume", "nothing: a study resumes by itself"),
    ("--ablation", "--methods ablations"),
    ("--also-sequential", "--methods sequential"),
    ("--schedule", "--methods sequential"),
];

impl Default for Grid {
    /// The issue's grid on the embedded data set: every method, three seeds, both protocols.
    fn default() -> Grid {
        Grid {
            datasets: vec![DataSpec::new(PipelineConfig::default().data)],
            seeds: vec![0, 1, 2],
            methods: Method::ALL.to_vec(),
            protocols: Protocol::BOTH.to_vec(),
            train_args: Vec::new(),
            select: None,
        }
    }
}

impl Grid {
    /// Sets the fields a JSON grid file names (others keep their value).
    pub fn apply_json(&mut self, v: &Value, file: &Path) -> Result<()> {
        let bad =
            |key: &str, want: &str| Error::format(file, format!("field \"{key}\" must be {want}"));
        let strings = |key: &str| -> Result<Option<Vec<String>>> {
            match v.get(key) {
                None => Ok(None),
                Some(x) => x
                    .as_array()
                    .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
                    .map(Some)
                    .ok_or_else(|| bad(key, "a list of strings")),
            }
        };
        let known = [
            "datasets",
            "seeds",
            "methods",
            "protocols",
            "train_args",
            "select",
        ];
        if let Some(key) = v
            .as_object()
            .ok_or_else(|| Error::format(file, "a study grid is a JSON object"))?
            .keys()
            .find(|k| !known.contains(&k.as_str()))
        {
            return Err(bad(key, &format!("one of {}", known.join(", "))));
        }
        if let Some(d) = v.get("datasets") {
            self.datasets = d
                .as_array()
                .and_then(|a| a.iter().map(DataSpec::from_json).collect())
                .ok_or_else(|| {
                    bad(
                        "datasets",
                        "a list of folders or {\"path\", \"train_args\"}",
                    )
                })?;
        }
        if let Some(seeds) = v.get("seeds") {
            self.seeds = seeds
                .as_array()
                .and_then(|a| a.iter().map(Value::as_u64).collect())
                .ok_or_else(|| bad("seeds", "a list of whole numbers"))?;
        }
        if let Some(m) = strings("methods")? {
            self.methods = Method::parse_list(&m)?;
        }
        if let Some(p) = strings("protocols")? {
            self.protocols = parse_protocols(&p)?;
        }
        if let Some(args) = strings("train_args")? {
            self.train_args = args;
        }
        self.select = match v.get("select") {
            None => self.select.take(),
            Some(Value::Bool(false) | Value::Null) => None,
            Some(Value::Bool(true)) => Some(SearchSpace::default()),
            Some(space) if space.is_object() => {
                let mut s = SearchSpace::default();
                s.apply_json(space)?;
                Some(s)
            }
            Some(_) => return Err(bad("select", "true, false or an object of lists")),
        };
        Ok(())
    }

    /// The config of `data`'s cells: the shared train options, then the data set's own
    /// (checked like `train`'s command line).
    pub fn base_config(&self, data: &DataSpec) -> Result<PipelineConfig> {
        let given = self.train_args.iter().chain(&data.train_args);
        if let Some((flag, instead)) = given
            .clone()
            .find_map(|a| STUDY_OWNED.iter().find(|(f, _)| a == f))
        {
            return Err(Error::config(
                format!("{flag} is set by the study for each cell"),
                format!("use {instead}"),
            ));
        }
        // The issue's selection reads every validation user: the study's one default that
        // differs from train's (a later --valid-users overrides it).
        let mut args: Vec<String> = vec!["--valid-users".into(), "0".into()];
        args.extend(given.cloned());
        args.extend(["--data".to_string(), data.path.display().to_string()]);
        flags::parse(args)
    }

    /// Every value checked, and the data set names unique (they name folders and rows).
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String, hint: &str| Err(Error::config(msg, hint));
        if self.datasets.is_empty() || self.seeds.is_empty() || self.protocols.is_empty() {
            return fail(
                "a study needs at least one data set, seed and protocol".into(),
                "e.g. --datasets data/ml-latest-small --seeds 0,1,2",
            );
        }
        if !self.methods.iter().any(|&m| m != Method::Popularity) {
            return fail("no method to train".into(), "e.g. --methods sft,ilrec");
        }
        let mut names: Vec<String> = self.datasets.iter().map(DataSpec::name).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return fail(
                format!("two data sets are both called {}", w[0]),
                "a data set is named by its folder; rename one folder",
            );
        }
        for d in &self.datasets {
            self.base_config(d)?;
        }
        Ok(())
    }

    /// What defines the cells' contents, for `study.json`: a study folder refuses a different
    /// one. Seeds may change and data sets may be added (they only add or leave out cells); a
    /// data set already in the folder keeps its own train options.
    pub fn identity(&self) -> Value {
        let own: serde_json::Map<String, Value> = self
            .datasets
            .iter()
            .map(|d| (d.name(), json!(d.train_args)))
            .collect();
        json!({
            "methods": self.methods.iter().map(|m| m.key()).collect::<Vec<_>>(),
            "protocols": self.protocols.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "train_args": self.train_args,
            "select": self.select.as_ref().map(SearchSpace::to_json),
            "datasets": own,
        })
    }
}

/// A data set's name: its folder's name (`data/ml-latest-small` -> `ml-latest-small`).
pub fn dataset_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

pub fn parse_protocols(words: &[String]) -> Result<Vec<Protocol>> {
    let mut out: Vec<Protocol> = words
        .iter()
        .map(|w| Protocol::parse(w))
        .collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ablations::{all_ablations, ABLATIONS};
    use crate::pipeline::variants::variants;

    #[test]
    fn every_trained_method_is_a_pipeline_row() {
        // An ablation method's key is the pipeline's `--ablations` name of the same row.
        for m in Method::ALL.into_iter().filter(|m| m.is_ablation()) {
            assert!(ABLATIONS.contains(&(m.key(), m.row())), "{m:?}");
        }
        let cfg = PipelineConfig {
            ablations: all_ablations(),
            also_sequential: true,
            ..PipelineConfig::default()
        };
        let rows: Vec<String> = variants(&cfg, 2, None).into_iter().map(|v| v.0).collect();
        for m in Method::ALL {
            let baseline = matches!(m, Method::Popularity | Method::Sasrec);
            assert!(baseline || rows.iter().any(|r| r == m.row()), "{m:?}");
            assert_eq!(Method::from_key(m.key()).unwrap(), m);
        }
        assert_eq!(rows.len(), Method::ALL.len() - 2);
    }

    #[test]
    fn method_lists_expand_and_sort() {
        let words = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        let m = Method::parse_list(&words("ilrec,sft,ablations,sft")).unwrap();
        assert_eq!(m.len(), 7);
        assert_eq!(&m[..2], &[Method::Sft, Method::Ilrec]);
        assert_eq!(Method::parse_list(&words("all")).unwrap(), Method::ALL);
        assert!(Method::parse_list(&words("ilrec,magic")).is_err());
    }

    #[test]
    fn a_json_grid_sets_its_fields_and_refuses_unknown_ones() {
        let mut g = Grid::default();
        let here = env!("CARGO_MANIFEST_DIR");
        let v = json!({"seeds": [4, 5], "methods": ["sft", "ilrec"],
                       "protocols": ["exclude-history"], "train_args": ["--epochs", "2"],
                       "datasets": [{"path": here, "train_args": ["--kcore", "0", "--epochs", "3"]},
                                    format!("{here}/data")]});
        g.apply_json(&v, Path::new("g.json")).unwrap();
        assert_eq!(g.seeds, vec![4, 5]);
        assert_eq!(g.methods, vec![Method::Sft, Method::Ilrec]);
        assert_eq!(g.protocols, vec![Protocol::ExcludeHistory]);
        // A data set's own options come after the shared ones.
        let own = g.base_config(&g.datasets[0]).unwrap();
        assert_eq!((own.epochs, own.load.kcore, own.valid_users), (3.0, 0, 0));
        let shared = g.base_config(&g.datasets[1]).unwrap();
        assert_eq!((shared.epochs, shared.load.kcore), (2.0, 5));
        assert_eq!(g.identity()["datasets"]["data"], json!([]));
        let err = g
            .apply_json(&json!({"seed": [1]}), Path::new("g.json"))
            .unwrap_err();
        assert!(err.to_string().contains("\"seed\""), "{err}");
        g.datasets[1].train_args = vec!["--seed".into(), "3".into()];
        let err = g.base_config(&g.datasets[1]).unwrap_err().to_string();
        assert!(err.contains("--seeds"), "{err}");
    }
}
