//! The RQ-VAE against PyTorch (`../shared/fixtures/rqvae`, made by make_more_fixtures.py):
//! codes exact, z / z_q / recon, every loss term, and the gradient of every parameter (the
//! straight-through estimator included). Sizes and loss weights come from rqvae.json.

mod common;

use common::fixture;
use ilrec::model::weights::SafetensorsFile;
use ilrec::sid::{RqVae, RqVaeConfig};
use ilrec::{Tape, Tensor};

const VALUE_TOL: f32 = 1e-4;
const LOSS_TOL: f32 = 1e-5;
const GRAD_ABS: f32 = 1e-4;
const GRAD_REL: f32 = 1e-3;

fn fixture_config() -> RqVaeConfig {
    let text = std::fs::read_to_string(fixture("rqvae/rqvae.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let size = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("rqvae.json: {k}")) as usize;
    RqVaeConfig {
        in_dim: size("in_dim"),
        hidden: v["hidden"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_u64().unwrap() as usize)
            .collect(),
        e_dim: size("e_dim"),
        levels: size("levels"),
        codes: size("codes"),
        beta: v["beta"].as_f64().unwrap() as f32,
        quant_weight: v["quant_weight"].as_f64().unwrap() as f32,
    }
}

/// The reference's exact shape, then [`common::assert_tensors_close`].
fn assert_close(what: &str, got: &Tensor, want: &Tensor, abs: f32, rel: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    common::assert_tensors_close(what, got, want, abs, rel);
}

#[test]
fn rqvae_step_matches_pytorch() {
    let config = fixture_config();
    let model = RqVae::load(config.clone(), &fixture("rqvae/params.safetensors")).unwrap();
    let reference = SafetensorsFile::open(fixture("rqvae/reference.safetensors")).unwrap();
    let x = reference.tensor_f32("x").unwrap();
    let mut tape = Tape::new();
    let xv = tape.constant(x);
    let out = model.forward(&mut tape, xv).unwrap();

    let (want_codes, shape) = reference.tensor_i64("codes").unwrap();
    assert_eq!(shape, vec![shape[0], config.levels]);
    let got_codes: Vec<i64> = out.codes.iter().map(|&c| c as i64).collect();
    assert_eq!(got_codes, want_codes, "codes (items x levels)");

    for (name, var) in [("z", out.z), ("z_q", out.z_q), ("recon", out.recon)] {
        assert_close(
            name,
            tape.value(var),
            &reference.tensor_f32(name).unwrap(),
            VALUE_TOL,
            0.0,
        );
    }
    for (name, var) in [
        ("loss.total", out.total),
        ("loss.recon", out.recon_loss),
        ("loss.quant", out.quant_loss),
    ] {
        assert_close(
            name,
            tape.value(var),
            &reference.tensor_f32(name).unwrap(),
            LOSS_TOL,
            0.0,
        );
    }

    let grads = tape.backward(out.total).unwrap();
    drop(tape);
    let mut params = model.params.clone();
    params.accumulate(&grads).unwrap();
    assert!(
        params.params_without_gradient().is_empty(),
        "no gradient: {:?}",
        params.params_without_gradient()
    );
    for id in params.ids() {
        let name = params.name(id);
        let want = reference.tensor_f32(&format!("grad.{name}")).unwrap();
        let got = params
            .grad(id)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_close(&format!("grad.{name}"), got, &want, GRAD_ABS, GRAD_REL);
    }
    // Every parameter of the reference has a gradient there and here (none forgotten).
    let names: Vec<String> = reference
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad."))
        .collect();
    assert_eq!(names.len(), params.len(), "reference gradients {names:?}");
}

#[test]
fn zero_sizes_are_refused_before_training() {
    let base = fixture_config();
    for (field, cfg) in [
        (
            "levels",
            RqVaeConfig {
                levels: 0,
                ..base.clone()
            },
        ),
        (
            "codes",
            RqVaeConfig {
                codes: 0,
                ..base.clone()
            },
        ),
        (
            "e_dim",
            RqVaeConfig {
                e_dim: 0,
                ..base.clone()
            },
        ),
    ] {
        let err = RqVae::new(cfg, 0)
            .err()
            .unwrap_or_else(|| panic!("{field} = 0 accepted"))
            .to_string();
        assert!(
            err.contains("is 0") && !err.contains('\n'),
            "{field}: {err}"
        );
    }
}
