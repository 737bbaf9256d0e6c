//! The item embeddings an RQ-VAE quantises, from three sources (ILREC.md section 2):
//! - `cf`: SASRec's item table (row i + 1 is item i; row 0 is padding), [`sasrec_item_table`];
//! - `llm`: mean-pooled final hidden states (after the final norm, as HF's
//!   `last_hidden_state`) of each item's text under a pretrained model, computed with the
//!   KV-free forward in right-padded batches, [`llm_item_embeddings`]; cached as a safetensors
//!   file by [`llm_item_embeddings_cached`]. No BOS is added (our `encode` adds none).
//!   The item text is `rec::Item::text`: the title plus the data set's other text fields
//!   (`; genres: ...`, `; brand: ...`, `; categories: ...`, `; description: ...`).
//! - a file: one 2-D f32 tensor (items, dim) ordered by the data set's dense item ids,
//!   [`load_embeddings_file`].

use crate::autograd::Tape;
use crate::cf::SasRec;
use crate::fingerprint::Fingerprint;
use crate::model::llama::{BatchInput, Llama};
use crate::model::weights::SafetensorsFile;
use crate::tensor::Tensor;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Name of the tensor [`save_embeddings`] writes.
pub const EMBEDDINGS_TENSOR: &str = "item_embeddings";

/// Reads the single 2-D tensor of `path` and checks it has one row per item.
pub fn load_embeddings_file(path: &Path, num_items: usize) -> Result<Tensor> {
    let file = SafetensorsFile::open(path)?;
    let names = file.names();
    let [name] = names.as_slice() else {
        return Err(Error::format(
            path,
            format!(
                "expected exactly one tensor (items, dim), found {} ({})",
                names.len(),
                names.join(", ")
            ),
        ));
    };
    let t = file.tensor_f32(name)?;
    if t.rank() != 2 {
        return Err(Error::format(
            path,
            format!(
                "tensor `{name}` has shape {:?}, expected 2-D (items = {num_items}, dim)",
                t.shape()
            ),
        ));
    }
    if t.shape()[0] != num_items {
        return Err(Error::format(path, format!(
            "tensor `{name}` has {} rows, the data set has {num_items} items (one row per item, in item-id order)",
            t.shape()[0])));
    }
    if t.shape()[1] == 0 {
        return Err(Error::format(path, format!("tensor `{name}` has width 0")));
    }
    if let Some(bad) = t.data()?.iter().position(|v| !v.is_finite()) {
        let d = t.shape()[1];
        return Err(Error::format(
            path,
            format!(
                "tensor `{name}`: item {} has a non-finite value at column {}",
                bad / d,
                bad % d
            ),
        ));
    }
    Ok(t)
}

/// Writes `embeddings` (items, dim) as the one tensor [`EMBEDDINGS_TENSOR`] of `path`.
pub fn save_embeddings(path: &Path, embeddings: &Tensor) -> Result<()> {
    let mut params = crate::autograd::Params::new();
    let id = params.add(EMBEDDINGS_TENSOR, embeddings.to_f32(), false)?;
    crate::model::weights::save_params(&params, &[id], path)
}

/// SASRec's item table without the padding row: (items, hidden), row i = item i.
pub fn sasrec_item_table(model: &SasRec) -> Result<Tensor> {
    let id = model.params.id("item_emb.weight").ok_or_else(|| {
        Error::config(
            "SASRec has no `item_emb.weight`",
            "pass a model built by cf::SasRec",
        )
    })?;
    let table = model.params.value(id).to_f32();
    let (rows, d) = (table.shape()[0], table.shape()[1]);
    Tensor::from_vec(table.data()?[d..].to_vec(), &[rows - 1, d])
}

/// Mean over the tokens of each text of the final-norm hidden states: (texts, hidden_size).
/// Texts run `batch` at a time, right-padded (causal attention never lets a real token see the
/// padding after it, and the mean skips it). A text with no tokens is an error naming it.
/// `done(n)` is called after each batch with the n texts it held (a progress bar: on a 135M
/// model a few thousand item texts take minutes on 2 cores).
pub fn llm_item_embeddings(
    model: &Llama,
    tokenizer: &Tokenizer,
    texts: &[String],
    batch: usize,
    done: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let d = model.config.hidden_size;
    let batch = batch.max(1);
    let mut out = Vec::with_capacity(texts.len() * d);
    for (chunk_no, chunk) in texts.chunks(batch).enumerate() {
        let rows: Vec<Vec<u32>> = chunk.iter().map(|t| tokenizer.encode(t)).collect();
        if let Some(empty) = rows.iter().position(Vec::is_empty) {
            return Err(Error::config(
                format!(
                    "item {}: its text {:?} encodes to no tokens",
                    chunk_no * batch + empty,
                    chunk[empty]
                ),
                "give every item a non-empty text",
            ));
        }
        let input = BatchInput::right_padded(&rows, rows[0][0]);
        let mut tape = Tape::inference();
        let fwd = model.forward(&mut tape, &input, Some(&[0]))?;
        let last = *fwd.hidden.last().expect("hidden[0] always exists");
        let flat = tape.reshape(last, &[input.batch * input.seq, d])?;
        let normed = tape.rms_norm(flat, fwd.head.norm, model.config.rms_norm_eps)?; // (B*T, D)
        let h = tape.value(normed).data()?;
        for (b, row) in rows.iter().enumerate() {
            let mut mean = vec![0.0f64; d];
            for t in 0..row.len() {
                let at = (b * input.seq + t) * d;
                mean.iter_mut()
                    .zip(&h[at..at + d])
                    .for_each(|(m, &v)| *m += v as f64);
            }
            out.extend(mean.iter().map(|&m| (m / row.len() as f64) as f32));
        }
        done(chunk.len());
    }
    Tensor::from_vec(out, &[texts.len(), d])
}

/// [`llm_item_embeddings`], read from / written to `dir/llm_item_embeddings_<key>.safetensors`,
/// where the key hashes the texts, the model's sizes and its embedding and final-norm weights
/// (another model or other texts never reuse a stale file). Returns the embeddings and the file.
pub fn llm_item_embeddings_cached(
    model: &Llama,
    tokenizer: &Tokenizer,
    texts: &[String],
    batch: usize,
    dir: &Path,
    done: &mut dyn FnMut(usize),
) -> Result<(Tensor, PathBuf)> {
    let path = dir.join(format!(
        "llm_item_embeddings_{:016x}.safetensors",
        cache_key(model, texts)?
    ));
    if path.exists() {
        return Ok((load_embeddings_file(&path, texts.len())?, path));
    }
    let embeddings = llm_item_embeddings(model, tokenizer, texts, batch, done)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_embeddings(&path, &embeddings)?;
    Ok((embeddings, path))
}

/// The fingerprint of the texts, the config and the embedding / final-norm values.
fn cache_key(model: &Llama, texts: &[String]) -> Result<u64> {
    let mut f = Fingerprint::new();
    for t in texts {
        f.text(t);
    }
    f.bytes(format!("{:?}", model.config).as_bytes());
    for id in [model.embed_id(), model.final_norm_id()] {
        f.tensor_values(model.params.value(id))?;
    }
    Ok(f.finish())
}
