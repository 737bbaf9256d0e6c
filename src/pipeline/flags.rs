//! The command line of a run: `train --help` (every flag with its default, the same defaults as
//! [`PipelineConfig::default`]) and the parser that turns flags into a checked [`PipelineConfig`].
//! Lives beside the config so every front end (`train`, later `eval` / `recommend`) reads the same
//! flags the same way.

use super::config::{ItemRepr, PipelineConfig, SidSource};
use super::data_flags::parse_data_flag;
use crate::cli::Flags;
use crate::ilrec::gradients::NegativesScope;
use crate::ilrec::negatives::Ensemble;
use crate::ilrec::schedule::Schedule;
use crate::ilrec::LensLayers;
use crate::lora::LoraConfig;
use crate::rec::Protocol;
use crate::Result;
use std::path::PathBuf;

/// `train --help`.
pub const HELP: &str = concat!(
    "train: the ILRec pipeline end to end (data -> SASRec -> SFT warm-up -> ILRec and SFT -> beam-search evaluation -> table)

Usage: train [options]

Data:
  --data DIR            data set folder (MovieLens CSV or RecBole atomic files) [embedded data/ml-latest-small]
",
    crate::data_flags_help!(),
    "Model:
  --model PRESET|PATH   preset (tiny, mini, small, base) trained from scratch, an HF checkpoint folder or a .gguf file [tiny]
  --lora SPEC           LoRA on the pretrained --model PATH instead of full fine-tuning: the base is
                        frozen, the adapters (and the SID token rows) train; SPEC is
                        r=R,alpha=A,dropout=P,targets=all|q,k,v,o,gate,up,down[,layers=0,1,..][,rslora=true],
                        omitted keys take the paper's r=64,alpha=32,dropout=0.05,targets=all;
                        adapters are saved as PEFT folders in checkpoints/<stage>/adapter/ [off]
  --item-repr sid|title how items are written: semantic IDs <a_12><b_3><c_7>, or titles [sid]
  --sid-embeddings cf|llm|FILE   what the RQ-VAE quantises: SASRec's item table, the mean final
                        hidden state of the item text under a pretrained --model, or a
                        (items, dim) .safetensors tensor [cf]
  --sids FILE           use this sids.json (LC-Rec .index.json shape) instead of building SIDs
  --max-history N       history items in the LLM prompt [10]
  --train-samples N     seeded subsample of training samples for the LLM, 0 = all [0 = all]
  --valid-users N       seeded subset of validation users for model selection, 0 = all [200]
  --test-users N        subset of test users (a fixed seed: the same users for every --seed), 0 = all [0 = all]
Training:
  --epochs E            SFT warm-up passes over the training samples [1]
  --finetune-epochs E   passes of each continuation (ILRec and SFT from the warm-up) [0.5]
  --batch B             examples per step [16]
  --lr LR               peak learning rate (cosine to lr/10) [0.002]
  --warmup F            linear lr warm-up, fraction of a stage's steps [0.05]
  --clip-norm C         global gradient-norm clip [1]
  --weight-decay W      AdamW weight decay (norms and biases excluded) [0.01]
  --sasrec-epochs N     SASRec (the CF reward model): most epochs [30]
  --sasrec-patience N   SASRec: stop after N epochs without a better validation NDCG@10 [3]
ILRec:
  --lens-layers S       logit-lens layers: a list like 2,3 (blocks from 1), `lastK`, or `final` [last4: the four blocks below the top]
  --alpha A  --lambda L  --mu M  --margin G  --tau T   CPO, CRR, CPD weights; negative margin and temperature [0.1 0.1 1 0 1]
  --tau-r T             CRR reward temperature [1]
  --negatives-scope trie|vocab   negatives from the trie children of the prefix, or any token [trie]
  --ensemble mean|sum   how the lens layers' logits are combined for mining [mean]
  --schedule joint|sequential   the two ILRec stages [joint]
  --ablation            also run w/o CPO, w/o CRR, w/o CPD, final-layer negatives (with CPD 0, and with CPD kept)
  --ablations LIST      only these of them: wo-cpo, wo-crr, wo-cpd, final-cpd0, final-cpd-kept
  --also-sequential     also fine-tune ILRec with --schedule sequential from the same warm-up (row `ilrec sequential`)
Evaluation and output:
  --exclude-history     rank only items the user has not interacted with before the target
                        (RecBole's general-model protocol) [off: every item is ranked]
  --beams N             beam width of constrained decoding [20]
  --seed S              seed of everything [0]
  --threads N           evaluation threads [2]
  --out DIR             run folder [runs/run-<unix seconds>]
  --checkpoint-every N  save a resumable checkpoint every N steps [50]
  --resume              continue a killed run in --out from its last checkpoint
  --help                this text
"
);

/// The command line as a [`PipelineConfig`]; every value checked before any work.
pub fn parse(args: Vec<String>) -> Result<PipelineConfig> {
    let mut c = PipelineConfig::default();
    let mut f = Flags::new("see train --help", args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--data" => c.data = PathBuf::from(f.value(flag)?),
            _ if parse_data_flag(&mut c.load, &mut f, flag)? => {}
            "--model" => c.model = f.value(flag)?,
            "--lora" => c.lora = Some(LoraConfig::parse(&f.value(flag)?)?),
            "--item-repr" => c.item_repr = ItemRepr::parse(&f.value(flag)?)?,
            "--sid-embeddings" => c.sid_embeddings = SidSource::parse(&f.value(flag)?),
            "--sids" => c.sids = Some(PathBuf::from(f.value(flag)?)),
            "--max-history" => c.max_history = f.num(flag)?,
            "--train-samples" => c.train_samples = f.num(flag)?,
            "--valid-users" => c.valid_users = f.num(flag)?,
            "--test-users" => c.test_users = f.num(flag)?,
            "--epochs" => c.epochs = f.num(flag)?,
            "--finetune-epochs" => c.finetune_epochs = f.num(flag)?,
            "--batch" => c.batch = f.num(flag)?,
            "--lr" => c.lr = f.num(flag)?,
            "--warmup" => c.warmup_fraction = f.num(flag)?,
            "--clip-norm" => c.clip_norm = f.num(flag)?,
            "--weight-decay" => c.weight_decay = f.num(flag)?,
            "--sasrec-epochs" => c.sasrec_epochs = f.num(flag)?,
            "--sasrec-patience" => c.sasrec_patience = f.num(flag)?,
            _ => parse_ilrec_or_output(&mut c, &mut f, flag)?,
        }
    }
    c.validate()?;
    Ok(c)
}

/// The ILRec, evaluation and output flags (the second half of [`parse`]).
fn parse_ilrec_or_output(c: &mut PipelineConfig, f: &mut Flags, flag: &str) -> Result<()> {
    match flag {
        "--lens-layers" => c.lens_layers = LensLayers::parse(&f.value(flag)?)?,
        "--alpha" => c.alpha = f.num(flag)?,
        "--lambda" => c.lambda = f.num(flag)?,
        "--mu" => c.mu = f.num(flag)?,
        "--tau-r" => c.tau_r = f.num(flag)?,
        "--margin" => c.margin = f.num(flag)?,
        "--tau" => c.tau = f.num(flag)?,
        "--negatives-scope" => c.negatives_scope = NegativesScope::parse(&f.value(flag)?)?,
        "--ensemble" => c.ensemble = Ensemble::parse(&f.value(flag)?)?,
        "--schedule" => c.schedule = Schedule::parse(&f.value(flag)?)?,
        "--ablation" => c.ablations = super::ablations::all_ablations(),
        "--ablations" => c.ablations = super::ablations::parse_ablations(&f.value(flag)?)?,
        "--also-sequential" => c.also_sequential = true,
        "--exclude-history" => c.protocol = Protocol::ExcludeHistory,
        "--beams" => c.beams = f.num(flag)?,
        "--seed" => c.seed = f.num(flag)?,
        "--threads" => c.threads = f.num(flag)?,
        "--out" => c.out = Some(PathBuf::from(f.value(flag)?)),
        "--checkpoint-every" => c.checkpoint_every = f.num(flag)?,
        "--resume" => c.resume = true,
        other => return Err(f.unknown(other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value each flag of HELP accepts (switches take none).
    fn sample_value(flag: &str) -> Option<&'static str> {
        match flag {
            "--ablation"
            | "--also-sequential"
            | "--resume"
            | "--help"
            | "--allow-missing-text"
            | "--exclude-history" => None,
            "--user-inter-num-interval" | "--item-inter-num-interval" => Some("[2,inf)"),
            "--rm-dup-inter" => Some("last"),
            "--user-field" | "--item-field" | "--time-field" | "--rating-field" => Some("x"),
            "--item-text-fields" => Some("title,genres"),
            "--model" => Some("tiny"),
            "--lora" => Some("r=4,targets=q,v"),
            "--item-repr" => Some("title"),
            "--sid-embeddings" => Some("cf"),
            "--sids" => Some("sids.json"),
            "--lens-layers" => Some("1"),
            "--negatives-scope" => Some("vocab"),
            "--ensemble" => Some("sum"),
            "--schedule" => Some("sequential"),
            "--ablations" => Some("wo-crr,final-cpd0"),
            "--out" => Some("runs/flags-test"),
            "--data" => Some(env!("CARGO_MANIFEST_DIR")),
            _ => Some("2"),
        }
    }

    #[test]
    fn every_flag_in_help_is_parsed_and_no_other() {
        let flags: Vec<&str> = HELP
            .split_whitespace()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .collect();
        assert!(flags.len() > 30, "HELP lists {} flags", flags.len());
        for flag in flags.into_iter().filter(|&f| f != "--help") {
            let mut args = vec![flag.to_string()];
            args.extend(sample_value(flag).map(String::from));
            if flag == "--resume" {
                args.extend(["--out".into(), "runs/flags-test".into()]);
            }
            if let Err(e) = parse(args) {
                assert!(!e.to_string().contains("unknown option"), "{flag}: {e}");
            }
        }
        let err = parse(vec!["--no-such-flag".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option"), "{err}");
    }

    #[test]
    fn no_flags_is_the_default_config() {
        let parsed = parse(Vec::new()).unwrap();
        let default = PipelineConfig::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn flags_set_their_fields() {
        let args = "--sasrec-epochs 7 --sasrec-patience 2 --tau-r 0.5 --negatives-scope vocab --ensemble sum --clip-norm 0.5 --weight-decay 0 --warmup 0.1 --exclude-history --kcore 3 --min-rating 4";
        let c = parse(args.split(' ').map(String::from).collect()).unwrap();
        assert_eq!(c.protocol, Protocol::ExcludeHistory);
        assert_eq!((c.load.kcore, c.load.min_rating), (3, Some(4.0)));
        assert_eq!((c.sasrec_epochs, c.sasrec_patience), (7, 2));
        assert_eq!((c.tau_r, c.clip_norm, c.weight_decay), (0.5, 0.5, 0.0));
        assert_eq!(c.warmup_fraction, 0.1);
        assert_eq!(c.negatives_scope, NegativesScope::Vocab);
        assert_eq!(c.ensemble, Ensemble::Sum);
        assert!(c.lora.is_none(), "full fine-tuning unless --lora is given");
        let lora = parse(vec!["--lora".into(), "r=8,alpha=16,targets=q,v".into()]).unwrap();
        let lora = lora.lora.unwrap();
        assert_eq!((lora.r, lora.alpha, lora.targets.len()), (8, 16.0, 2));
    }
}
