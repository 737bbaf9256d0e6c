//! The ablations a run can add (`--ablation`, `--ablations`; `ablations` in a run's config):
//! their short names and table rows, and the parsing of a list of them. Below both the config
//! (which records the list) and [`super::variants`] (which builds a run's step for each).

/// The ablations, as (short name of `--ablations`, table row), in table order.
pub const ABLATIONS: [(&str, &str); 5] = [
    ("wo-cpo", "ilrec w/o cpo"),
    ("wo-crr", "ilrec w/o crr"),
    ("wo-cpd", "ilrec w/o cpd"),
    ("final-cpd0", "final-layer negatives, CPD 0 (S = {L})"),
    ("final-cpd-kept", "final-layer negatives, CPD kept"),
];

/// The short names of every ablation (`--ablation`).
pub fn all_ablations() -> Vec<String> {
    ABLATIONS.iter().map(|(key, _)| key.to_string()).collect()
}

/// Parses `--ablations wo-cpo,wo-crr` into short names in table order (each once); an unknown
/// name is an error that lists the known ones.
pub fn parse_ablations(list: &str) -> crate::Result<Vec<String>> {
    let wanted: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(bad) = wanted
        .iter()
        .find(|w| ABLATIONS.iter().all(|(key, _)| key != *w))
    {
        let known: Vec<&str> = ABLATIONS.iter().map(|(key, _)| *key).collect();
        return Err(crate::Error::config(
            format!("--ablations: unknown ablation `{bad}`"),
            format!("known: {}", known.join(", ")),
        ));
    }
    Ok(ABLATIONS
        .iter()
        .filter(|(key, _)| wanted.contains(key))
        .map(|(key, _)| key.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_comes_back_in_table_order_each_once() {
        let names = parse_ablations(" final-cpd-kept,wo-crr,, wo-crr ").unwrap();
        assert_eq!(names, ["wo-crr", "final-cpd-kept"]);
        assert_eq!(parse_ablations("").unwrap(), Vec::<String>::new());
        assert_eq!(all_ablations().len(), ABLATIONS.len());
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_known_ones() {
        let e = parse_ablations("wo-crr,wo-everything")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wo-everything") && e.contains("final-cpd-kept"),
            "{e}"
        );
    }
}
