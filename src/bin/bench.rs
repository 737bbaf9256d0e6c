//! `bench`: micro-benchmarks behind the numbers in BENCHMARKS.md.
//!
//! ```text
//! bench gemm --m M --n N --k K [--ta] [--tb] [--threads T] [--reps R] [--batch B] [--isa scalar|avx2|avx512] [--json]
//! bench peak [--threads T] [--json]
//! bench train-step --config PATH/config.json [--batch B] [--seq T] [--steps N] [--threads K]
//!                  [--objective lm|sft|ilrec] [--items sid|title]
//!                  [--lora SPEC [--base-dtype f32|bf16]] [--json]
//! bench decoder --config PATH/config.json [--batch B] [--seq T] [--steps N] [--threads K] [--json]
//! bench adapter --config PATH/config.json [--batch B] [--seq T] [--rank R] [--dropout P] [--threads K] [--reps N] [--json]
//! ```
//! Each subcommand is one function taking its own argument list. `train-step` times the training
//! step that BENCHMARKS.md compares with PyTorch (`bench/pytorch_step.py`); its logic lives in
//! `ilrec::speed`.

use ilrec::cli::Flags;
use ilrec::cpu::dropout::draw_mask;
use ilrec::cpu::gemm::{sgemm_batched_with_isa, sgemm_with_isa, Isa};
use ilrec::cpu::thin::{expand, project, reduce, Keep};
use ilrec::cpu::{peak, pool};
use ilrec::lora::LoraConfig;
use ilrec::model::config::LlamaConfig;
use ilrec::rng::Rng;
use ilrec::speed::{process_cpu_seconds, time_forward_backward, time_train_step};
use ilrec::speed::{StepObjective, StepSetup, SyntheticItems};
use ilrec::{DType, Error, Result};
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  bench gemm --m M --n N --k K [--ta] [--tb] [--threads T] [--reps R] [--batch B] [--isa scalar|avx2|avx512] [--json]
  bench peak [--threads T] [--json]
  bench train-step --config PATH/config.json [--batch B] [--seq T] [--steps N] [--threads K] [--objective lm|sft|ilrec] [--items sid|title] [--lora SPEC [--base-dtype f32|bf16]] [--json]
  bench decoder --config PATH/config.json [--batch B] [--seq T] [--steps N] [--threads K] [--json]
  bench adapter --config PATH/config.json [--batch B] [--seq T] [--rank R] [--dropout P] [--threads K] [--reps N] [--json]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gemm") => bench_gemm(&args[1..]),
        Some("peak") => bench_peak(&args[1..]),
        Some("train-step") => bench_train_step(&args[1..]),
        Some("decoder") => bench_decoder(&args[1..]),
        Some("adapter") => bench_adapter(&args[1..]),
        Some(other) => Err(usage_error(format!("unknown subcommand `{other}`"))),
        None => Err(usage_error("missing subcommand".to_string())),
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(2);
    }
}

fn usage_error(msg: String) -> Error {
    Error::Config {
        msg,
        hint: USAGE.to_string(),
    }
}

struct GemmArgs {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    threads: Option<usize>,
    reps: Option<usize>,
    batch: usize,
    isa: Isa,
    json: bool,
}

fn parse_gemm_args(args: &[String]) -> Result<GemmArgs> {
    let (mut m, mut n, mut k) = (None, None, None);
    let mut g = GemmArgs {
        m: 0,
        n: 0,
        k: 0,
        trans_a: false,
        trans_b: false,
        threads: None,
        reps: None,
        batch: 1,
        isa: Isa::detect(),
        json: false,
    };
    let mut flags = Flags::new(USAGE, args.to_vec());
    while let Some(flag) = flags.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--m" => m = Some(flags.positive(flag)?),
            "--n" => n = Some(flags.positive(flag)?),
            "--k" => k = Some(flags.positive(flag)?),
            "--ta" => g.trans_a = true,
            "--tb" => g.trans_b = true,
            "--threads" => g.threads = Some(flags.positive(flag)?),
            "--reps" => g.reps = Some(flags.positive(flag)?),
            "--batch" => g.batch = flags.positive(flag)?,
            "--isa" => {
                let name = flags.value(flag)?;
                g.isa = Isa::parse(&name)
                    .ok_or_else(|| usage_error(format!("unknown --isa `{name}`")))?;
            }
            "--json" => g.json = true,
            other => return Err(flags.unknown(other)),
        }
    }
    let need = |v: Option<usize>, name: &str| {
        v.ok_or_else(|| usage_error(format!("gemm: {name} is required")))
    };
    g.m = need(m, "--m")?;
    g.n = need(n, "--n")?;
    g.k = need(k, "--k")?;
    Ok(g)
}

/// Deterministic values in [-1, 1) (a small LCG), so runs are reproducible.
fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench_gemm(args: &[String]) -> Result<()> {
    let g = parse_gemm_args(args)?;
    if let Some(t) = g.threads {
        pool::set_num_threads(t);
    }
    // Operands stored as the transposes say: op(A) is m x k, op(B) is k x n; tight strides;
    // `batch` items back to back.
    let (lda, ldb) = (
        if g.trans_a { g.m } else { g.k },
        if g.trans_b { g.k } else { g.n },
    );
    let (size_a, size_b, size_c) = (g.m * g.k, g.k * g.n, g.m * g.n);
    let a = pseudo_random(g.batch * size_a, 1); // [batch, m, k] or [batch, k, m]
    let b = pseudo_random(g.batch * size_b, 2); // [batch, k, n] or [batch, n, k]
    let mut c = vec![0.0f32; g.batch * size_c]; // [batch, m, n]
    let flops = 2.0 * (g.batch * g.m * g.n * g.k) as f64;
    let timing = time_reps(g.reps, || {
        if g.batch == 1 {
            #[rustfmt::skip]
            sgemm_with_isa(g.isa, g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0, &a, lda, &b, ldb, 0.0, &mut c, g.n);
        } else {
            #[rustfmt::skip]
            sgemm_batched_with_isa(g.isa, g.batch, g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0,
                &a, lda, size_a, &b, ldb, size_b, 0.0, &mut c, g.n, size_c);
        }
    });
    let gflops = flops / timing.median / 1e9;
    let threads = pool::num_threads();
    if g.json {
        let per_cpu = timing.cpu_seconds.map_or("null".to_string(), |cpu| {
            format!("{:.2}", flops * timing.reps as f64 / cpu / 1e9)
        });
        #[rustfmt::skip]
        println!(
            "{{\"m\":{},\"n\":{},\"k\":{},\"batch\":{},\"ta\":{},\"tb\":{},\"isa\":\"{}\",\"threads\":{},\"reps\":{},\"gflops\":{:.2},\"ms_median\":{:.4},\"gflops_best\":{:.2},\"gflops_per_cpu_s\":{}}}",
            g.m, g.n, g.k, g.batch, g.trans_a, g.trans_b, g.isa.name(), threads, timing.reps, gflops,
            timing.median * 1e3, flops / timing.fastest / 1e9, per_cpu
        );
    } else {
        #[rustfmt::skip]
        println!(
            "gemm {}x{}x{} batch={} ta={} tb={} isa={} threads={}: {:.1} GFLOP/s, median {:.3} ms over {} reps",
            g.m, g.n, g.k, g.batch, g.trans_a, g.trans_b, g.isa.name(), threads, gflops, timing.median * 1e3, timing.reps
        );
    }
    Ok(())
}

/// Wall-clock statistics of repeated runs, plus the CPU time they used.
struct Timing {
    reps: usize,
    median: f64,
    /// The fastest run: what the code does when the (shared) machine lets it.
    fastest: f64,
    /// CPU seconds of the whole process over the timed runs: flops per CPU-second shows what
    /// the kernels achieve while they hold a core, even when other processes share the
    /// machine (10 ms tick resolution, so None for runs under 50 ms; None off Linux).
    cpu_seconds: Option<f64>,
}

/// How long `time_reps` runs before it times. One run was not enough for short products on 2
/// threads: on the 2-core VM, 30 reps of a 0.33 ms product (512 x 192 x 576) measured 150 or
/// 350 GFLOP/s depending on the process, the second vCPU still waking up; 300 reps always 345.
const WARM_UP_SECONDS: f64 = 0.2;

/// Warm-up runs (thread start, buffer growth, page faults) for at least [`WARM_UP_SECONDS`],
/// then `reps` timed runs (default: as many as fit in ~3 s, between 3 and 50).
fn time_reps(reps: Option<usize>, mut run: impl FnMut()) -> Timing {
    let mut timed = || {
        let t = Instant::now();
        run();
        t.elapsed().as_secs_f64()
    };
    let first = timed();
    let mut warmed = first;
    while warmed < WARM_UP_SECONDS {
        warmed += timed();
    }
    let reps = reps.unwrap_or(((3.0 / first.max(1e-6)) as usize).clamp(3, 50));
    let cpu_before = process_cpu_seconds();
    let mut times: Vec<f64> = (0..reps).map(|_| timed()).collect();
    let cpu_seconds = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before)
        .filter(|&cpu| cpu > 0.05);
    times.sort_by(f64::total_cmp);
    Timing {
        reps,
        median: times[times.len() / 2],
        fastest: times[0],
        cpu_seconds,
    }
}

fn bench_peak(args: &[String]) -> Result<()> {
    let (mut threads, mut json) = (pool::num_threads(), false);
    let mut flags = Flags::new(USAGE, args.to_vec());
    while let Some(flag) = flags.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--threads" => threads = flags.positive(flag)?,
            "--json" => json = true,
            other => return Err(flags.unknown(other)),
        }
    }
    // One second per width (not the library's 0.3 s) so CPU time, read in 10 ms ticks, is
    // accurate: flops per CPU-second is the per-core peak even when other processes share the
    // machine, which the wall-clock GFLOP/s is not.
    let probe = |width| {
        let cpu_before = process_cpu_seconds();
        let p = peak::fma_probe(threads, width, Duration::from_secs(1))?;
        let cpu = process_cpu_seconds()
            .zip(cpu_before)
            .map(|(a, b)| a - b)
            .filter(|&c| c > 0.05);
        Some((p.gflops(), cpu.map(|c| p.flops / c / 1e9)))
    };
    let avx2 = probe(peak::VectorWidth::Avx2);
    let avx512 = probe(peak::VectorWidth::Avx512);
    let fmt = |v: Option<f64>| v.map_or("null".to_string(), |g| format!("{g:.2}"));
    let (wall2, cpu2) = (avx2.map(|p| p.0), avx2.and_then(|p| p.1));
    let (wall5, cpu5) = (avx512.map(|p| p.0), avx512.and_then(|p| p.1));
    if json {
        #[rustfmt::skip]
        println!(
            "{{\"threads\":{threads},\"gflops\":{},\"gflops_avx512\":{},\"gflops_per_cpu_s\":{},\"gflops_avx512_per_cpu_s\":{}}}",
            fmt(wall2), fmt(wall5), fmt(cpu2), fmt(cpu5)
        );
    } else {
        #[rustfmt::skip]
        println!(
            "FMA peak, {threads} threads: AVX2 {} GFLOP/s ({} per CPU-second), AVX-512 {} GFLOP/s ({} per CPU-second)",
            fmt(wall2), fmt(cpu2), fmt(wall5), fmt(cpu5)
        );
    }
    Ok(())
}

/// `--base-dtype f32|bf16`: the frozen base's storage under --lora (bf16: half the memory).
fn parse_base_dtype(flags: &mut Flags, flag: &str) -> Result<DType> {
    match flags.value(flag)?.as_str() {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        other => Err(flags.error(format!("--base-dtype is f32 or bf16, found `{other}`"))),
    }
}

/// The value of `flag` read by `parse` (a name such as `ilrec` or `sid`); an unknown one is a
/// one-line error naming the flag.
fn parse_named<T>(flags: &mut Flags, flag: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let name = flags.value(flag)?;
    parse(&name).ok_or_else(|| flags.error(format!("train-step: {flag} `{name}` is unknown")))
}

/// The flags every model-step subcommand takes: the config, the batch shape, threads, --json.
struct StepFlags {
    config: Option<String>,
    batch: usize,
    seq: usize,
    json: bool,
}

impl StepFlags {
    fn new() -> StepFlags {
        StepFlags {
            config: None,
            batch: 4,
            seq: 128,
            json: false,
        }
    }

    /// Takes `flag` if it is one of these (true), else leaves it to the subcommand (false).
    fn take(&mut self, flags: &mut Flags, flag: &str) -> Result<bool> {
        match flag {
            "--config" => self.config = Some(flags.value(flag)?),
            "--batch" => self.batch = flags.positive(flag)?,
            "--seq" => self.seq = flags.positive(flag)?,
            "--threads" => pool::set_num_threads(flags.positive(flag)?),
            "--json" => self.json = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads `args`: these flags here, the subcommand's own through `own` (true when it took
    /// the flag); any other flag is an error.
    fn parse(
        args: &[String],
        mut own: impl FnMut(&mut Flags, &str) -> Result<bool>,
    ) -> Result<StepFlags> {
        let mut step = StepFlags::new();
        let mut flags = Flags::new(USAGE, args.to_vec());
        while let Some(flag) = flags.next_flag() {
            if !step.take(&mut flags, &flag)? && !own(&mut flags, &flag)? {
                return Err(flags.unknown(&flag));
            }
        }
        Ok(step)
    }

    /// The model config (`--config` is required).
    fn model(&self, subcommand: &str) -> Result<LlamaConfig> {
        let path = self
            .config
            .as_ref()
            .ok_or_else(|| usage_error(format!("{subcommand}: --config is required")))?;
        LlamaConfig::from_file(path)
    }
}

fn bench_train_step(args: &[String]) -> Result<()> {
    let (mut steps, mut lora) = (3, None);
    let (mut objective, mut items) = (StepObjective::Lm, SyntheticItems::Sid);
    let mut base_dtype = DType::F32;
    let step = StepFlags::parse(args, |flags, flag| {
        match flag {
            "--steps" => steps = flags.positive(flag)?,
            "--objective" => objective = parse_named(flags, flag, StepObjective::parse)?,
            "--items" => items = parse_named(flags, flag, SyntheticItems::parse)?,
            // LoRA on the random model (`train --lora`'s syntax): only the adapter trains.
            "--lora" => lora = Some(flags.value(flag)?),
            "--base-dtype" => base_dtype = parse_base_dtype(flags, flag)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let cfg = step.model("train-step")?;
    let StepFlags {
        batch, seq, json, ..
    } = step;
    let lora_cfg = lora.as_deref().map(LoraConfig::parse).transpose()?;
    let setup = StepSetup {
        objective,
        items,
        lora: lora_cfg.as_ref(),
        base_dtype,
    };
    let r = time_train_step(&cfg, batch, seq, steps, &setup)?;
    let name = match &lora {
        Some(spec) => format!(
            "{} lora {spec} base {}",
            objective.name(),
            base_dtype.name()
        ),
        None => objective.name().to_string(),
    };
    if let Some(table) = ilrec::autograd::profile::report() {
        eprintln!("per-op time over all steps (warm-up included; ILREC_PROFILE):\n{table}");
    }
    let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.2}"));
    // The trainer's step (sft, ilrec) runs forward and backward in one call.
    let phases = match objective {
        StepObjective::Lm => format!(
            "forward {:.1}, backward {:.1}",
            r.ms_forward_median, r.ms_backward_median
        ),
        _ => format!("forward + backward {:.1}", r.ms_forward_median),
    };
    if json {
        #[rustfmt::skip]
        println!(
            "{{\"impl\":\"ilrec-rs\",\"objective\":\"{name}\",\"items\":\"{}\",\"batch\":{batch},\"seq\":{seq},\"threads\":{},\"steps\":{},\"ms_per_step_median\":{:.1},\"ms_per_step_min\":{:.1},\"ms_per_step_max\":{:.1},\"ms_forward_median\":{:.1},\"ms_backward_median\":{:.1},\"ms_optimizer_median\":{:.1},\"tokens_per_s\":{:.1},\"gflops\":{:.2},\"gflops_per_cpu_s\":{},\"peak_rss_mb\":{},\"loss\":{:.5},\"ms_steps\":{:.1?},\"faults_steps\":{}}}",
            items.name(), pool::num_threads(), r.steps, r.ms_per_step_median, r.ms_per_step_min, r.ms_per_step_max,
            r.ms_forward_median, r.ms_backward_median, r.ms_optimizer_median, r.tokens_per_s, r.gflops,
            opt(r.gflops_per_cpu_s), opt(r.peak_rss_mb), r.last_loss, r.ms_steps,
            r.faults_steps.as_ref().map_or("null".to_string(), |f| format!("{f:?}"))
        );
    } else {
        #[rustfmt::skip]
        println!(
            "train-step {name} B={batch} T={seq} threads={}: median {:.1} ms/step (min {:.1}, max {:.1}; {phases}, optimizer {:.1}), {:.1} tokens/s, {:.1} GFLOP/s, peak RSS {} MiB, loss {:.4}",
            pool::num_threads(), r.ms_per_step_median, r.ms_per_step_min, r.ms_per_step_max,
            r.ms_optimizer_median, r.tokens_per_s, r.gflops,
            opt(r.peak_rss_mb), r.last_loss
        );
    }
    Ok(())
}

/// Decoder throughput (BENCHMARKS.md "Llama decoder"): forward tokens/s (no tape) and
/// forward+backward tokens/s (all-row logits, next-token loss, gradients into the parameters).
fn bench_decoder(args: &[String]) -> Result<()> {
    let mut steps = 3;
    let step = StepFlags::parse(args, |flags, flag| {
        match flag {
            "--steps" => steps = flags.positive(flag)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let cfg = step.model("decoder")?;
    let StepFlags {
        batch, seq, json, ..
    } = step;
    let (fwd, fwd_bwd) = time_forward_backward(&cfg, batch, seq, steps)?;
    let threads = pool::num_threads();
    if json {
        #[rustfmt::skip]
        println!(
            "{{\"batch\":{batch},\"seq\":{seq},\"threads\":{threads},\"steps\":{steps},\"forward_tokens_per_s\":{fwd:.1},\"forward_backward_tokens_per_s\":{fwd_bwd:.1}}}"
        );
    } else {
        println!(
            "decoder B={batch} T={seq} threads={threads}: forward {fwd:.1} tokens/s, forward+backward {fwd_bwd:.1} tokens/s (mean of {steps} steps)"
        );
    }
    Ok(())
}

/// What a LoRA adapter adds to one block's frozen products, piece by piece (BENCHMARKS.md
/// "LoRA step"): the dropout masks and the six thin products of `Tape::lora_linear`, each over
/// the block's seven projections (sizes from the config), timed alone (median of `--reps`).
fn bench_adapter(args: &[String]) -> Result<()> {
    let (mut rank, mut dropout, mut reps) = (16, 0.05f32, None);
    let step = StepFlags::parse(args, |flags, flag| {
        match flag {
            "--rank" => rank = flags.positive(flag)?,
            "--dropout" => dropout = flags.num(flag)?,
            "--reps" => reps = Some(flags.positive(flag)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !(0.0..1.0).contains(&dropout) {
        return Err(usage_error(format!(
            "adapter: --dropout {dropout} is outside [0, 1)"
        )));
    }
    let cfg = step.model("adapter")?;
    let StepFlags {
        batch, seq, json, ..
    } = step;
    // (inputs, outputs) of q, k, v, o, gate, up, down
    let (h, q, kv, f) = (
        cfg.hidden_size,
        cfg.q_dim(),
        cfg.kv_dim(),
        cfg.intermediate_size,
    );
    let shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, f), (h, f), (f, h)];
    let mut adapters: Vec<Adapter> = (0..shapes.len())
        .map(|i| Adapter::new(batch * seq, shapes[i], rank, dropout, i as u64))
        .collect();
    let pieces = time_adapter_pieces(&mut adapters, dropout, reps);
    let layers = cfg.num_hidden_layers;
    let total: f64 = pieces.iter().map(|p| p.1).sum();
    let threads = pool::num_threads();
    if json {
        let fields: Vec<String> = pieces
            .iter()
            .map(|((key, _), ms)| format!("\"{key}\":{ms:.4}"))
            .collect();
        #[rustfmt::skip]
        println!(
            "{{\"batch\":{batch},\"seq\":{seq},\"rank\":{rank},\"dropout\":{dropout},\"threads\":{threads},\"layers\":{layers},\"ms_per_block\":{{{}}},\"ms_per_block_total\":{total:.4},\"ms_per_step_total\":{:.2}}}",
            fields.join(","), total * layers as f64
        );
    } else {
        println!("adapter pieces, B={batch} T={seq} r={rank} dropout={dropout} threads={threads}, ms per block (7 projections; median):");
        for ((_, label), ms) in &pieces {
            println!("  {label:<26} {ms:7.3}");
        }
        println!(
            "  total {total:.3} ms a block, {:.1} ms a step ({layers} blocks)",
            total * layers as f64
        );
    }
    Ok(())
}

/// One projection's adapter operands (m rows, k inputs, n outputs, rank r), as `lora_linear`
/// holds them: x and the output gradient g, the factors in both layouts, hs and dh, the mask.
struct Adapter {
    dims: (usize, usize, usize, usize),
    x: Vec<f32>,
    g: Vec<f32>,
    y: Vec<f32>,
    dx: Vec<f32>,
    a: Vec<f32>,
    a_t: Vec<f32>,
    b: Vec<f32>,
    b_t: Vec<f32>,
    hs: Vec<f32>,
    dh: Vec<f32>,
    keep: Option<Vec<u64>>,
}

impl Adapter {
    fn new(m: usize, (k, n): (usize, usize), r: usize, dropout: f32, seed: u64) -> Adapter {
        let mut rng = Rng::new(seed);
        let keep = (dropout > 0.0)
            .then(|| draw_mask(&mut rng, Rng::uniform_below_threshold(dropout), m * k));
        let s = seed * 16;
        Adapter {
            dims: (m, k, n, r),
            x: pseudo_random(m * k, s),
            g: pseudo_random(m * n, s + 1),
            y: pseudo_random(m * n, s + 2),
            dx: pseudo_random(m * k, s + 3),
            a: pseudo_random(r * k, s + 4),
            a_t: pseudo_random(k * r, s + 5),
            b: pseudo_random(n * r, s + 6),
            b_t: pseudo_random(r * n, s + 7),
            hs: pseudo_random(m * r, s + 8),
            dh: pseudo_random(m * r, s + 9),
            keep,
        }
    }

    /// The mask over x as the thin products read it.
    fn x_keep(&self, dropout: f32) -> Option<Keep<'_>> {
        self.keep.as_ref().map(|bits| Keep {
            bits,
            row_len: self.dims.1,
            scale: 1.0 / (1.0 - dropout),
        })
    }
}

/// A piece's JSON key and its label.
type Piece = (&'static str, &'static str);

/// Times pieces over every projection's adapter, collecting (piece, median ms).
struct PieceTimer<'a> {
    ads: &'a mut [Adapter],
    reps: Option<usize>,
    times: Vec<(Piece, f64)>,
}

impl PieceTimer<'_> {
    fn time(&mut self, piece: Piece, run: &mut dyn FnMut(&mut Adapter)) {
        let ads = &mut *self.ads;
        let t = time_reps(self.reps, || ads.iter_mut().for_each(&mut *run));
        self.times.push((piece, t.median * 1e3));
    }
}

/// (piece, median ms over all projections) for the mask draws and the six products, in the
/// order `lora_linear` runs them (forward: mask, x A^T, y += hs B^T; backward: dB, dh, dA, dx).
fn time_adapter_pieces(ads: &mut [Adapter], p: f32, reps: Option<usize>) -> Vec<(Piece, f64)> {
    let mut timer = PieceTimer {
        ads,
        reps,
        times: Vec::new(),
    };
    // A whole pass first, its times dropped: whichever piece came first was timed up to 3x
    // slower than on a second pass (the unmasked project first: 1.25 ms a block, then 0.39).
    time_forward_pieces(&mut timer, p);
    time_backward_pieces(&mut timer, p);
    timer.times.clear();
    time_forward_pieces(&mut timer, p);
    time_backward_pieces(&mut timer, p);
    timer.times
}

fn time_forward_pieces(timer: &mut PieceTimer, p: f32) {
    let (isa, mut rng) = (Isa::detect(), Rng::new(7));
    // Without dropout `lora_linear` draws no mask.
    timer.time(("mask", "dropout mask"), &mut |ad| {
        let (m, k, ..) = ad.dims;
        if p > 0.0 {
            std::hint::black_box(draw_mask(&mut rng, Rng::uniform_below_threshold(p), m * k));
        }
    });
    timer.time(("project_x", "hs = xd A^T (project)"), &mut |ad| {
        let (m, k, _, r) = ad.dims;
        let mut hs = vec![0.0f32; m * r];
        project(
            isa,
            (m, k, r),
            (&ad.x, k, ad.x_keep(p)),
            &ad.a_t,
            r,
            &mut hs,
            r,
        );
    });
    timer.time(("expand_y", "y += hs B^T (expand)"), &mut |ad| {
        let (m, _, n, r) = ad.dims;
        expand(
            isa,
            (m, n, r),
            &ad.hs,
            r,
            &ad.b_t,
            n,
            true,
            None,
            &mut ad.y,
            n,
        );
    });
}

fn time_backward_pieces(timer: &mut PieceTimer, p: f32) {
    let isa = Isa::detect();
    timer.time(("reduce_db", "dB = g^T hs (reduce)"), &mut |ad| {
        let (m, _, n, r) = ad.dims;
        let mut db_t = vec![0.0f32; r * n];
        reduce(isa, (m, n, r), &ad.hs, r, (&ad.g, n, None), &mut db_t, n);
    });
    timer.time(("project_dh", "dh = g B (project)"), &mut |ad| {
        let (m, _, n, r) = ad.dims;
        let mut dh = vec![0.0f32; m * r];
        project(isa, (m, n, r), (&ad.g, n, None), &ad.b, r, &mut dh, r);
    });
    timer.time(("reduce_da", "dA = dh^T xd (reduce)"), &mut |ad| {
        let (m, k, _, r) = ad.dims;
        let mut da = vec![0.0f32; r * k];
        reduce(
            isa,
            (m, k, r),
            &ad.dh,
            r,
            (&ad.x, k, ad.x_keep(p)),
            &mut da,
            k,
        );
    });
    timer.time(("expand_dx", "dx += mask(dh A) (expand)"), &mut |ad| {
        let (m, k, _, r) = ad.dims;
        let keep = ad.keep.as_ref().map(|bits| Keep {
            bits,
            row_len: k,
            scale: 1.0 / (1.0 - p),
        });
        expand(
            isa,
            (m, k, r),
            &ad.dh,
            r,
            &ad.a,
            k,
            true,
            keep,
            &mut ad.dx,
            k,
        );
    });
}
