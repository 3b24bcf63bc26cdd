//! safetensors files: the format PyTorch and Hugging Face load, so released weights open anywhere.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{Layout, ParamSet, ParamsError};

/// Metadata key holding the layout order, since safetensors itself keeps tensors by name.
const ORDER_KEY: &str = "harambee.order";

impl ParamSet {
    /// Serialises to safetensors bytes (F32, with the layout order kept in the metadata).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ParamsError> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .iter()
            .map(|(spec, values)| {
                let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (spec.name.clone(), spec.shape.clone(), raw)
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, shape, raw) in &bytes {
            let view = TensorView::new(Dtype::F32, shape.clone(), raw)
                .map_err(|e| ParamsError::Safetensors(e.to_string()))?;
            views.push((name.clone(), view));
        }
        let order: Vec<&str> = self
            .layout()
            .tensors()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let order = join_order(&order);
        let metadata = HashMap::from([
            ("format".to_string(), "pt".to_string()),
            (ORDER_KEY.to_string(), order),
        ]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| ParamsError::Safetensors(e.to_string()))
    }

    /// Reads safetensors bytes. Tensor order comes from Harambee's metadata when present,
    /// otherwise from the order of the data in the file.
    pub fn from_safetensors(bytes: &[u8]) -> Result<ParamSet, ParamsError> {
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| ParamsError::Safetensors(e.to_string()))?;
        let mut names: Vec<(String, usize)> = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.data_offsets.0))
            .collect();
        names.sort_by_key(|(_, offset)| *offset);
        let mut names: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
        if let Some(order) = metadata.metadata().as_ref().and_then(|m| m.get(ORDER_KEY)) {
            let declared = parse_order(order);
            let mut sorted_declared = declared.clone();
            sorted_declared.sort();
            let mut sorted_names = names.clone();
            sorted_names.sort();
            if sorted_declared == sorted_names {
                names = declared;
            }
        }
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| ParamsError::Safetensors(e.to_string()))?;
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let view = st
                .tensor(&name)
                .map_err(|e| ParamsError::Safetensors(e.to_string()))?;
            tensors.push((
                name.clone(),
                view.shape().to_vec(),
                f32_values(&name, &view)?,
            ));
        }
        ParamSet::from_tensors(tensors)
    }

    /// Reads safetensors bytes into a known layout: every tensor of the layout must be present
    /// with its exact shape; extra tensors in the file are an error too.
    pub fn from_safetensors_with_layout(
        bytes: &[u8],
        layout: &Layout,
    ) -> Result<ParamSet, ParamsError> {
        let loaded = ParamSet::from_safetensors(bytes)?;
        if loaded.layout().tensors().len() != layout.tensors().len() {
            return Err(ParamsError::LayoutMismatch);
        }
        let mut values = Vec::with_capacity(layout.num_values());
        for spec in layout.tensors() {
            let found = loaded
                .layout()
                .get(&spec.name)
                .filter(|s| s.shape == spec.shape)
                .ok_or(ParamsError::LayoutMismatch)?;
            values.extend_from_slice(&loaded.values()[found.offset..found.offset + found.len]);
        }
        ParamSet::from_values(layout.clone(), values)
    }
}

fn f32_values(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, ParamsError> {
    if view.dtype() != Dtype::F32 {
        return Err(ParamsError::UnsupportedDtype {
            name: name.to_string(),
            dtype: format!("{:?}", view.dtype()),
        });
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Names joined by newlines: tensor names never contain one in practice, and a file where they
/// do simply falls back to file order.
fn join_order(names: &[&str]) -> String {
    names.join("\n")
}

fn parse_order(order: &str) -> Vec<String> {
    order.split('\n').map(str::to_string).collect()
}
