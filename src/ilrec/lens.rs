//! The logit lens: which intermediate layers ILRec reads, and their logits.
//!
//! Layer `l` means the raw output `h^l` of block `l` (blocks counted from 1), seen through the
//! model's own final RMSNorm and LM head: `z^l = W N(h^l)`. Layer `L` (the number of blocks) is the
//! model's logits. The model applies `W N(.)` in `Llama::head`, so lens logits and final logits
//! come from the same code path and differ only in which hidden state goes in.

use crate::error::{Error, Result};

/// Which blocks the lens reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LensLayers {
    /// The `k` blocks just below the top: L-1, L-2, ..., L-k (clipped to >= 1). ILRec's default is 4.
    BelowTop(usize),
    /// Explicit block indices, 1..=L.
    Explicit(Vec<usize>),
}

impl Default for LensLayers {
    fn default() -> Self {
        LensLayers::BelowTop(4)
    }
}

impl LensLayers {
    /// Parses `"last4"` / `"below-top:4"` (the k blocks below the top), `"final"` (S = {L}, the
    /// final-layer ablation) or a comma list `"10,20,29"`.
    pub fn parse(s: &str) -> Result<LensLayers> {
        let bad = || {
            Error::config(
                format!("bad lens layers `{s}`"),
                "use a list like 2,3 or `last4` or `final`",
            )
        };
        let s = s.trim();
        if s == "final" {
            return Ok(LensLayers::BelowTop(0));
        }
        if let Some(k) = s
            .strip_prefix("last")
            .or_else(|| s.strip_prefix("below-top:"))
        {
            return k
                .trim()
                .parse()
                .map(LensLayers::BelowTop)
                .map_err(|_| bad());
        }
        let layers: std::result::Result<Vec<usize>, _> =
            s.split(',').map(|x| x.trim().parse::<usize>()).collect();
        match layers {
            Ok(v) if !v.is_empty() => Ok(LensLayers::Explicit(v)),
            _ => Err(bad()),
        }
    }

    /// The text [`LensLayers::parse`] reads back: `last4`, `final`, `1,3`.
    pub fn spec(&self) -> String {
        match self {
            LensLayers::BelowTop(0) => "final".into(),
            LensLayers::BelowTop(k) => format!("last{k}"),
            LensLayers::Explicit(v) => {
                let v: Vec<String> = v.iter().map(|l| l.to_string()).collect();
                v.join(",")
            }
        }
    }

    /// The concrete block indices for a model of `num_blocks` blocks, ascending and distinct.
    /// `BelowTop(0)` means the final layer itself, {L} (negatives from the final layer).
    pub fn resolve(&self, num_blocks: usize) -> Result<Vec<usize>> {
        let mut layers = match self {
            LensLayers::BelowTop(0) => vec![num_blocks],
            LensLayers::BelowTop(k) => (1..=*k)
                .filter_map(|i| num_blocks.checked_sub(i))
                .filter(|&l| l >= 1)
                .collect(),
            LensLayers::Explicit(v) => v.clone(),
        };
        if let Some(&l) = layers.iter().find(|&&l| l == 0 || l > num_blocks) {
            return Err(Error::config(
                format!("lens layer {l} is outside the model's blocks 1..={num_blocks}"),
                "layers are block indices counted from 1; the final layer is the number of blocks",
            ));
        }
        if layers.is_empty() {
            return Err(Error::config(
                format!("no lens layer below the top of a {num_blocks}-block model"),
                "use --lens-layers final to take negatives from the final layer",
            ));
        }
        layers.sort_unstable();
        layers.dedup();
        Ok(layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_back() {
        for s in ["last4", "final", "1,3", "2"] {
            assert_eq!(LensLayers::parse(s).unwrap().spec(), s);
        }
    }

    #[test]
    fn default_is_the_four_blocks_below_the_top_clipped() {
        assert_eq!(
            LensLayers::default().resolve(30).unwrap(),
            vec![26, 27, 28, 29]
        );
        assert_eq!(LensLayers::default().resolve(4).unwrap(), vec![1, 2, 3]);
        assert_eq!(LensLayers::default().resolve(2).unwrap(), vec![1]);
        assert!(LensLayers::default().resolve(1).is_err());
    }

    #[test]
    fn parse_lists_and_forms() {
        assert_eq!(
            LensLayers::parse("3,2,3").unwrap().resolve(4).unwrap(),
            vec![2, 3]
        );
        assert_eq!(
            LensLayers::parse("last2").unwrap().resolve(4).unwrap(),
            vec![2, 3]
        );
        assert_eq!(
            LensLayers::parse("final").unwrap().resolve(4).unwrap(),
            vec![4]
        );
        assert!(LensLayers::parse("5").unwrap().resolve(4).is_err());
        assert!(LensLayers::parse("0").unwrap().resolve(4).is_err());
        assert!(LensLayers::parse("a,b").is_err());
        assert!(LensLayers::parse("").is_err());
    }
}
