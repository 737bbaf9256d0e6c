//! The data-set flags, shared by `train` and the `dataset` binary: each sets a field of
//! [`LoadOptions`] (RecBole's option names, with `-` for `_`), and `config.json` records them.
//! Every default is today's loading: 5-core, the earliest of a repeated pair kept, ratings
//! ignored, RecBole's field names.

use crate::cli::Flags;
use crate::rec::{FieldNames, Intervals, KeepDuplicate, LoadOptions};
use crate::{Error, Result};
use serde_json::{json, Value};

/// The help lines of the data flags (a macro so that `concat!` can splice it into each
/// binary's help text).
#[macro_export]
macro_rules! data_flags_help {
    () => {
        "  --kcore K             k-core filter on users and items, 0 = off [5]
  --user-inter-num-interval I   RecBole's interval of interactions per user, e.g. \"[5,inf)\",
                        \"(0,100]\", \"[1,3);[10,inf)\"; replaces the user side of --kcore [--kcore]
  --item-inter-num-interval I   the same per item; replaces the item side of --kcore [--kcore]
  --rm-dup-inter first|last     which of a repeated user-item pair is kept, in time order [first]
  --min-rating R        keep only interactions rated >= R (implicit feedback) [off: ratings ignored]
  --user-field F  --item-field F  --time-field F  --rating-field F
                        RecBole atomic-file columns [user_id item_id timestamp rating]
  --item-text-fields A,B,...   item text columns, the first is the title [the first of title,
                        movie_title, item_name, name; then the other token_seq columns]
  --allow-missing-text  title an item without text (blank, or absent from .item) by its id
  --max-text-chars C    cap on an item's text [512]
"
    };
}

/// Sets the [`LoadOptions`] field of `flag` from the command line. `Ok(false)`: not a data flag.
pub fn parse_data_flag(load: &mut LoadOptions, f: &mut Flags, flag: &str) -> Result<bool> {
    match flag {
        "--kcore" => load.kcore = f.num(flag)?,
        "--user-inter-num-interval" => load.user_inter_num = Some(interval(f, flag)?),
        "--item-inter-num-interval" => load.item_inter_num = Some(interval(f, flag)?),
        "--rm-dup-inter" => load.keep_duplicate = KeepDuplicate::parse(&f.value(flag)?)?,
        "--min-rating" => {
            let r: f64 = f.num(flag)?;
            if !r.is_finite() {
                return Err(f.error(format!("{flag} {r}: must be a finite number")));
            }
            load.min_rating = Some(r);
        }
        "--user-field" => load.fields.user = field_name(f, flag)?,
        "--item-field" => load.fields.item = field_name(f, flag)?,
        "--time-field" => load.fields.time = field_name(f, flag)?,
        "--rating-field" => load.fields.rating = field_name(f, flag)?,
        "--item-text-fields" => {
            let list = f.value(flag)?;
            let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
            if names.iter().any(String::is_empty) {
                return Err(f.error(format!("{flag} '{list}': an empty field name")));
            }
            load.fields.item_text = Some(names);
        }
        "--allow-missing-text" => load.allow_missing_text = true,
        "--max-text-chars" => load.max_text_chars = f.positive(flag)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn interval(f: &mut Flags, flag: &str) -> Result<Intervals> {
    let text = f.value(flag)?;
    Intervals::parse(&text).map_err(|msg| {
        Error::config(
            format!("{flag}: {msg}"),
            "RecBole's syntax: [lo,hi) with [ or ( and ] or ), numbers or inf, several joined by ;",
        )
    })
}

fn field_name(f: &mut Flags, flag: &str) -> Result<String> {
    let name = f.value(flag)?.trim().to_string();
    if name.is_empty() || name.contains([':', '\t']) {
        return Err(f.error(format!("{flag} '{name}': a field name, without its :type")));
    }
    Ok(name)
}

/// The data options as `config.json` records them (intervals in RecBole's syntax).
pub fn data_options_json(load: &LoadOptions) -> Value {
    let (users, items) = load.inter_num_intervals();
    json!({
        "kcore": load.kcore,
        "user_inter_num_interval": users.to_string(),
        "item_inter_num_interval": items.to_string(),
        "rm_dup_inter": load.keep_duplicate.name(),
        "min_rating": load.min_rating,
        "user_field": load.fields.user, "item_field": load.fields.item,
        "time_field": load.fields.time, "rating_field": load.fields.rating,
        "item_text_fields": load.fields.item_text,
        "allow_missing_text": load.allow_missing_text,
        "max_text_chars": load.max_text_chars,
    })
}

/// The data options back from `config.json`'s `data_options` ([`data_options_json`]); an
/// interval equal to what `kcore` implies comes back unset, as the command line left it.
pub fn data_options_from_json(v: &Value) -> Result<LoadOptions> {
    let bad = |key: &str| {
        Error::config(
            format!("config.json: data_options.{key} is missing or mistyped"),
            "the run folder's config.json was written by `train`; do not edit it by hand",
        )
    };
    let text = |key: &str| v.get(key).and_then(Value::as_str).ok_or_else(|| bad(key));
    let uint = |key: &str| v.get(key).and_then(Value::as_u64).ok_or_else(|| bad(key));
    let kcore = uint("kcore")? as usize;
    let default = Intervals::at_least(kcore).to_string();
    let interval = |key: &str| -> Result<Option<Intervals>> {
        let t = text(key)?;
        match t == default {
            true => Ok(None),
            false => Intervals::parse(t).map(Some).map_err(|_| bad(key)),
        }
    };
    let item_text = match v.get("item_text_fields") {
        Some(Value::Null) | None => None,
        Some(list) => {
            Some(serde_json::from_value(list.clone()).map_err(|_| bad("item_text_fields"))?)
        }
    };
    Ok(LoadOptions {
        kcore,
        user_inter_num: interval("user_inter_num_interval")?,
        item_inter_num: interval("item_inter_num_interval")?,
        keep_duplicate: KeepDuplicate::parse(text("rm_dup_inter")?)?,
        min_rating: v.get("min_rating").and_then(Value::as_f64),
        max_text_chars: uint("max_text_chars")? as usize,
        fields: FieldNames {
            user: text("user_field")?.into(),
            item: text("item_field")?.into(),
            time: text("time_field")?.into(),
            rating: text("rating_field")?.into(),
            item_text,
        },
        allow_missing_text: v
            .get("allow_missing_text")
            .and_then(Value::as_bool)
            .ok_or_else(|| bad("allow_missing_text"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<LoadOptions> {
        let mut load = LoadOptions::default();
        let mut f = Flags::new("see --help", args.split(' ').map(String::from).collect());
        while let Some(flag) = f.next_flag() {
            if !parse_data_flag(&mut load, &mut f, &flag)? {
                return Err(f.unknown(&flag));
            }
        }
        Ok(load)
    }

    #[test]
    fn each_flag_sets_its_field() {
        let load = parse(
            "--user-inter-num-interval [3,inf) --rm-dup-inter last --min-rating 3.5 \
             --user-field uid --item-text-fields movie_title,class --allow-missing-text --kcore 0",
        )
        .unwrap();
        assert_eq!(load.user_inter_num, Some(Intervals::at_least(3)));
        assert_eq!(load.item_inter_num, None);
        let (users, items) = load.inter_num_intervals();
        assert_eq!(
            (users.to_string(), items.to_string()),
            ("[3,inf)".into(), "[0,inf)".into())
        );
        assert_eq!(load.keep_duplicate, KeepDuplicate::Last);
        assert_eq!(load.min_rating, Some(3.5));
        assert_eq!(load.fields.user, "uid");
        assert_eq!(
            load.fields.item_text,
            Some(vec!["movie_title".into(), "class".into()])
        );
        assert!(load.allow_missing_text);
        assert_eq!(parse("--kcore 5").unwrap(), LoadOptions::default());
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, want) in [
            (
                "--user-inter-num-interval [5,inf",
                "--user-inter-num-interval",
            ),
            ("--rm-dup-inter none", "--rm-dup-inter none"),
            ("--min-rating inf", "--min-rating"),
            ("--min-rating four", "--min-rating four"),
            ("--user-field user_id:token", "--user-field"),
            ("--item-text-fields title,,genres", "--item-text-fields"),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("hint"), "{args}: {e}");
        }
    }
}
