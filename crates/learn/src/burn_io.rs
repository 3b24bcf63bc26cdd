//! Moving parameters between burn modules and [`ParamSet`]s.
//!
//! Burn stores a linear layer's weight as `[in, out]`; PyTorch, safetensors consumers and our
//! wire format use `[out, in]`. The conversion happens here and only here, so every
//! [`ParamSet`] in Harambee follows PyTorch's convention and released weights load there.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use harambee_params::{Layout, ParamSet};

/// Tracks the module path during a visit, to name tensors and spot linear weights.
#[derive(Default)]
struct Path {
    names: Vec<String>,
    containers: Vec<String>,
}

impl Path {
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }

    fn name(&self) -> String {
        self.names.join(".")
    }

    /// A `weight` directly inside a `Linear`: stored transposed by burn.
    fn is_linear_weight(&self) -> bool {
        self.names.last().is_some_and(|n| n == "weight")
            && self.containers.last().is_some_and(|c| c == "Struct:Linear")
    }
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

struct Collector {
    path: Path,
    names_shapes: Vec<(String, Vec<usize>)>,
    values: Vec<f32>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let mut shape = tensor.dims().to_vec();
        let data: Vec<f32> = tensor.into_data().iter::<f32>().collect();
        if self.path.is_linear_weight() && shape.len() == 2 {
            self.values.extend(transpose(&data, shape[0], shape[1]));
            shape.swap(0, 1);
        } else {
            self.values.extend(data);
        }
        self.names_shapes.push((self.path.name(), shape));
    }
}

/// The layout (names and PyTorch-convention shapes) of a module.
pub(crate) fn layout_of<M: Module>(module: &M) -> Layout {
    let mut c = Collector {
        path: Path::default(),
        names_shapes: Vec::new(),
        values: Vec::new(),
    };
    module.visit(&mut c);
    Layout::new(c.names_shapes).expect("burn module paths are unique and non-empty")
}

/// The module's parameters in `layout` (which must be the module's own layout).
pub(crate) fn export<M: Module>(module: &M, layout: &Layout) -> ParamSet {
    let mut c = Collector {
        path: Path::default(),
        names_shapes: Vec::new(),
        values: Vec::with_capacity(layout.num_values()),
    };
    module.visit(&mut c);
    ParamSet::from_values(layout.clone(), c.values)
        .expect("the layout was derived from this module")
}

struct Loader<'a> {
    path: Path,
    params: &'a ParamSet,
    next: usize,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, old, mapper) = param.consume();
        let spec = &self.params.layout().tensors()[self.next];
        self.next += 1;
        let values = &self.params.values()[spec.offset..spec.offset + spec.len];
        let shape = old.dims().to_vec();
        let values = if self.path.is_linear_weight() && shape.len() == 2 {
            // Ours is [out, in] = [shape[1], shape[0]].
            transpose(values, shape[1], shape[0])
        } else {
            values.to_vec()
        };
        let device = old.device();
        let require_grad = old.is_require_grad();
        let mut tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Replaces the module's parameters with `params` (which must follow the module's layout).
pub(crate) fn import<M: Module>(module: M, params: &ParamSet) -> M {
    module.map(&mut Loader {
        path: Path::default(),
        params,
        next: 0,
    })
}

/// FedProx's proximal step: `w ← w − lr·μ·(w − w_anchor)` on every parameter, the gradient
/// step of the term `μ/2‖w − w_anchor‖²`, applied after the optimiser's own step.
pub(crate) struct ProximalStep {
    anchors: Vec<Tensor<1>>,
    factor: f32,
    next: usize,
}

/// Flattened copies of the module's parameters, taken before local training.
struct AnchorCollector(Vec<Tensor<1>>);

impl ModuleVisitor for AnchorCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let t = if t.is_autodiff() { t.inner() } else { t };
        self.0.push(t.flatten(0, D - 1));
    }
}

impl ProximalStep {
    pub(crate) fn new<M: Module>(module: &M, learning_rate: f32, mu: f32) -> Self {
        let mut c = AnchorCollector(Vec::new());
        module.visit(&mut c);
        Self {
            anchors: c.0,
            factor: learning_rate * mu,
            next: 0,
        }
    }

    pub(crate) fn apply<M: Module>(&mut self, module: M) -> M {
        self.next = 0;
        module.map(self)
    }
}

impl ModuleMapper for ProximalStep {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let anchor = self.anchors[self.next].clone().reshape(tensor.shape());
        self.next += 1;
        let tracked = tensor.is_autodiff();
        let inner = if tracked { tensor.inner() } else { tensor };
        let stepped = inner.clone() - (inner - anchor) * self.factor;
        let tensor = if tracked {
            Tensor::from_inner(stepped).require_grad()
        } else {
            stepped
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}
