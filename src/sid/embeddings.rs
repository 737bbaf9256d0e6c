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
    let (name, t) = read_table(path)?;
    if t.shape()[0] != num_items {
        return Err(Error::format(path, format!(
            "tensor `{name}` has {} rows, the data set has {num_items} items (one row per item, in item-id order)",
            t.shape()[0])));
    }
    Ok(t)
}

/// The one 2-D tensor of a safetensors file, checked: non-empty width, every value finite.
/// Returns its name (for messages) and its values.
fn read_table(path: &Path) -> Result<(String, Tensor)> {
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
                "tensor `{name}` has shape {:?}, expected 2-D (items, dim)",
                t.shape()
            ),
        ));
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
    Ok((name.to_string(), t))
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
        out.extend(embed_batch(model, tokenizer, chunk, chunk_no * batch)?);
        done(chunk.len());
    }
    Tensor::from_vec(out, &[texts.len(), d])
}

/// The embeddings of one batch of texts, (texts, hidden_size) flattened; `first` is the index
/// of `texts[0]` among all items (for the error about an empty text).
fn embed_batch(
    model: &Llama,
    tokenizer: &Tokenizer,
    texts: &[String],
    first: usize,
) -> Result<Vec<f32>> {
    let d = model.config.hidden_size;
    let rows: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode(t)).collect();
    if let Some(empty) = rows.iter().position(Vec::is_empty) {
        return Err(Error::config(
            format!(
                "item {}: its text {:?} encodes to no tokens",
                first + empty,
                texts[empty]
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
    let mut out = Vec::with_capacity(rows.len() * d);
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
    Ok(out)
}

/// Texts between two saves of the partial result of [`llm_item_embeddings_cached`]: a killed
/// run loses at most this many (about 2 minutes of SmolLM2-135M on 2 cores).
pub const PARTIAL_EVERY: usize = 256;

/// [`llm_item_embeddings`], read from / written to `dir/llm_item_embeddings_<key>.safetensors`,
/// where the key hashes the texts, the model's sizes and its embedding and final-norm weights
/// (another model or other texts never reuse a stale file). Returns the embeddings and the file.
///
/// Resumable: every [`PARTIAL_EVERY`] texts the rows done so far are saved to
/// [`partial_path`] of that file, and a later call with the same key continues after them
/// (`done` is first told about the rows read back). Resumed with the same `batch`, the texts
/// are embedded in the same batches as in one uninterrupted run, so the rows are the same bits.
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
    let (d, batch) = (model.config.hidden_size, batch.max(1));
    let partial = partial_path(&path);
    let mut out = read_partial(&partial, texts.len(), d)?;
    let mut saved = out.len() / d;
    if saved > 0 {
        eprintln!(
            "sids: {saved} of {} item texts embedded before, read from {}",
            texts.len(),
            partial.display()
        );
        done(saved);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for chunk_start in (saved..texts.len()).step_by(batch) {
        let chunk = &texts[chunk_start..(chunk_start + batch).min(texts.len())];
        out.extend(embed_batch(model, tokenizer, chunk, chunk_start)?);
        done(chunk.len());
        let rows = out.len() / d;
        if rows - saved >= PARTIAL_EVERY && rows < texts.len() {
            save_embeddings(&partial, &Tensor::from_vec(out.clone(), &[rows, d])?)?;
            saved = rows;
        }
    }
    let embeddings = Tensor::from_vec(out, &[texts.len(), d])?;
    save_embeddings(&path, &embeddings)?;
    match std::fs::remove_file(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&partial, e)),
        _ => Ok((embeddings, path)),
    }
}

/// Where [`llm_item_embeddings_cached`] keeps the rows of an unfinished run of `path`.
pub fn partial_path(path: &Path) -> PathBuf {
    path.with_extension("partial.safetensors")
}

/// The rows a killed run saved at `partial` (flattened, a whole number of `d`-wide rows, at
/// most `num_items` of them); empty when there is no such file.
fn read_partial(partial: &Path, num_items: usize, d: usize) -> Result<Vec<f32>> {
    if !partial.exists() {
        return Ok(Vec::new());
    }
    let (name, t) = read_table(partial)?;
    let (rows, width) = (t.shape()[0], t.shape()[1]);
    if width != d || rows > num_items {
        return Err(Error::format(
            partial,
            format!(
                "tensor `{name}` is {rows} x {width}; the rows of an unfinished run are at most \
                 {num_items} x {d} (items x the model's hidden size); delete the file to start over"
            ),
        ));
    }
    Ok(t.to_vec())
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
