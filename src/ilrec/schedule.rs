//! The two training stages of ILRec (ILREC.md section 6) as a schedule over steps.
//!
//! - `joint` (default, the authors' code): every step optimises CPO + CRR + CPD together.
//! - `sequential`: the first half of the steps is cross-layer preference optimisation alone
//!   (CPO + CRR, mu = 0: the intermediate layers are not distilled), the second half adds the
//!   distillation (all terms), so the ablation can see what distillation adds on top.

use super::loss::ObjectiveWeights;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Joint,
    Sequential,
}

impl Schedule {
    /// Parses `joint` or `sequential`.
    pub fn parse(s: &str) -> Result<Schedule> {
        match s {
            "joint" => Ok(Schedule::Joint),
            "sequential" => Ok(Schedule::Sequential),
            _ => Err(Error::config(
                format!("unknown schedule `{s}`"),
                "use --schedule joint or --schedule sequential",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Joint => "joint",
            Schedule::Sequential => "sequential",
        }
    }

    /// The weights to use at 0-based `step` of a stage of `total` steps.
    pub fn weights_at(self, step: usize, total: usize, full: ObjectiveWeights) -> ObjectiveWeights {
        match self {
            Schedule::Joint => full,
            Schedule::Sequential if step < total / 2 => ObjectiveWeights { mu: 0.0, ..full },
            Schedule::Sequential => full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_distils_only_in_the_second_half() {
        let full = ObjectiveWeights {
            alpha: 0.1,
            lambda: 0.1,
            mu: 1.0,
            tau_r: 1.0,
        };
        let s = Schedule::parse("sequential").unwrap();
        assert_eq!(s.weights_at(0, 10, full).mu, 0.0);
        assert_eq!(s.weights_at(4, 10, full).mu, 0.0);
        assert_eq!(s.weights_at(4, 10, full).alpha, 0.1);
        assert_eq!(s.weights_at(5, 10, full), full);
        assert_eq!(Schedule::Joint.weights_at(0, 10, full), full);
        assert!(Schedule::parse("both").is_err());
    }
}
