//! Parameters across the boundary: a [`ParamSet`] becomes a dict of NumPy arrays without a
//! copy, and what the member's code returns comes back with one copy, checked tensor by
//! tensor (names, shapes, dtype, finite values), so a mistake is named where it was made.

use harambee_params::{Layout, ParamSet};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PySlice, PyTuple};

use crate::InvalidUpdateError;

/// An error about what the member's code returned.
pub(crate) fn invalid(message: String) -> PyErr {
    InvalidUpdateError::new_err(message)
}

/// The parameters as `{name: ndarray}` in layout order. The buffer moves into one NumPy array
/// and every tensor is a reshaped view of it: no value is copied, and the arrays are
/// writable, so a loop may train them in place.
pub(crate) fn to_python<'py>(py: Python<'py>, params: ParamSet) -> PyResult<Bound<'py, PyDict>> {
    let layout = params.layout().clone();
    let flat = PyArray1::from_vec(py, params.into_values());
    let dict = PyDict::new(py);
    for spec in layout.tensors() {
        let range = PySlice::new(
            py,
            spec.offset as isize,
            (spec.offset + spec.len) as isize,
            1,
        );
        let shape = PyTuple::new(py, &spec.shape)?;
        let view = flat.get_item(range)?.call_method1("reshape", (shape,))?;
        dict.set_item(&spec.name, view)?;
    }
    Ok(dict)
}

/// The parameters the member's code returned, in `layout`: every tensor present, no other,
/// each a float32 array of its shape holding finite values. Anything NumPy can read without
/// copying (`numpy.asarray`: NumPy arrays, CPU PyTorch tensors, JAX arrays) is accepted.
pub(crate) fn from_python(returned: &Bound<'_, PyAny>, layout: &Layout) -> PyResult<ParamSet> {
    let py = returned.py();
    let mapping = returned.cast::<PyMapping>().map_err(|_| {
        invalid(format!(
            "parameters must be a dict of arrays keyed by tensor name, not {}",
            type_name(returned)
        ))
    })?;
    for key in mapping.keys()?.iter() {
        let name: String = key.extract().map_err(|_| {
            invalid(format!(
                "parameter names must be str, not {}",
                type_name(&key)
            ))
        })?;
        if layout.get(&name).is_none() {
            return Err(invalid(format!(
                "unknown tensor {name:?}: the federation's model has no such tensor"
            )));
        }
    }
    let asarray = py.import("numpy")?.getattr("asarray")?;
    let mut values = Vec::with_capacity(layout.num_values());
    for spec in layout.tensors() {
        let name = &spec.name;
        let item = mapping
            .get_item(name)
            .map_err(|_| invalid(format!("missing tensor {name:?}")))?;
        let array = asarray.call1((&item,)).map_err(|e| {
            invalid(format!(
                "tensor {name:?}: a {} cannot be read as an array ({e}); a PyTorch tensor needs .detach().cpu()",
                type_name(&item)
            ))
        })?;
        let untyped = array.cast::<PyUntypedArray>()?;
        let typed = array.cast::<PyArrayDyn<f32>>().map_err(|_| {
            invalid(format!(
                "tensor {name:?} has dtype {}; the federation trains float32 (use .astype(numpy.float32))",
                untyped.dtype()
            ))
        })?;
        if untyped.shape() != spec.shape.as_slice() {
            return Err(invalid(format!(
                "tensor {name:?} has shape {:?}; the federation's is {:?}",
                untyped.shape(),
                spec.shape
            )));
        }
        let start = values.len();
        let readonly = typed.try_readonly()?;
        match readonly.as_slice() {
            Ok(contiguous) => values.extend_from_slice(contiguous),
            Err(_) => values.extend(readonly.as_array().iter().copied()),
        }
        if let Some(at) = values[start..].iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "tensor {name:?} holds NaN or infinite values (the first at flat index {at})"
            )));
        }
    }
    ParamSet::from_values(layout.clone(), values).map_err(|e| invalid(e.to_string()))
}

/// A Python object's type name, for messages.
pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "object".into(), |n| n.to_string())
}
