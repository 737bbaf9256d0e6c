//! Saving and loading a trained SASRec: one safetensors file holding every parameter under its
//! name (f32) and the config in the file's string metadata, so a file alone rebuilds the model.

use super::sasrec::{SasRec, SasRecConfig};
use crate::tensor::Tensor;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

impl SasRec {
    /// Writes the parameters and the config to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let c = &self.config;
        let metadata: HashMap<String, String> = [
            ("format", "ilrec-sasrec".to_string()),
            ("num_items", c.num_items.to_string()),
            ("max_len", c.max_len.to_string()),
            ("hidden", c.hidden.to_string()),
            ("blocks", c.blocks.to_string()),
            ("heads", c.heads.to_string()),
            ("dropout", c.dropout.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Little-endian f32 bytes of each parameter, kept alive for the views.
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .params
            .ids()
            .map(|id| {
                let t = self.params.value(id);
                let data: Vec<u8> = t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
                (self.params.name(id).to_string(), t.shape().to_vec(), data)
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, shape, data)| {
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::format(path, format!("tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::tensor::serialize_to_file(views, &Some(metadata), path)
            .map_err(|e| crate::model::weights::write_error(path, e))
    }

    /// Rebuilds a model saved by [`SasRec::save`]. Every parameter must be present with its
    /// shape; extra tensors are an error too (a file of some other model).
    pub fn load(path: &Path) -> Result<SasRec> {
        let buffer = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file = SafeTensors::deserialize(&buffer)
            .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&buffer)
            .map_err(|e| Error::format(path, format!("bad safetensors header: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let config = config_from_metadata(path, &meta)?;
        let mut model = SasRec::new(config, 0)?;
        if file.len() != model.params.len() {
            return Err(Error::format(
                path,
                format!(
                    "{} tensors, a SASRec of this config has {}",
                    file.len(),
                    model.params.len()
                ),
            ));
        }
        for id in model.params.ids().collect::<Vec<_>>() {
            let name = model.params.name(id).to_string();
            let view = file
                .tensor(&name)
                .map_err(|e| Error::format(path, format!("tensor {name}: {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(Error::format(
                    path,
                    format!("tensor {name}: dtype {:?}, expected F32", view.dtype()),
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let value = Tensor::from_vec(data, view.shape())?;
            model
                .params
                .set_value(id, value)
                .map_err(|e| Error::format(path, format!("tensor {name}: {e}")))?;
        }
        Ok(model)
    }
}

/// The config stored by `save`; every field must be present and parse.
fn config_from_metadata(path: &Path, meta: &HashMap<String, String>) -> Result<SasRecConfig> {
    if meta.get("format").map(String::as_str) != Some("ilrec-sasrec") {
        return Err(Error::format(
            path,
            "metadata field `format` is not `ilrec-sasrec` (not a SASRec saved by this crate)",
        ));
    }
    let field = |key: &str| -> Result<&String> {
        meta.get(key)
            .ok_or_else(|| Error::format(path, format!("metadata field `{key}` is missing")))
    };
    let size = |key: &str| -> Result<usize> {
        let v = field(key)?;
        v.parse().map_err(|_| {
            Error::format(
                path,
                format!("metadata field `{key}` = '{v}' is not a size"),
            )
        })
    };
    let dropout_text = field("dropout")?;
    let dropout = dropout_text.parse().map_err(|_| {
        Error::format(
            path,
            format!("metadata field `dropout` = '{dropout_text}' is not a number"),
        )
    })?;
    Ok(SasRecConfig {
        num_items: size("num_items")?,
        max_len: size("max_len")?,
        hidden: size("hidden")?,
        blocks: size("blocks")?,
        heads: size("heads")?,
        dropout,
    })
}
