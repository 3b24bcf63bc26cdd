//! Moving parameters between burn modules and [`ParamSet`]s.
//!
//! Burn stores a linear layer's weight as `[in, out]`; PyTorch, safetensors consumers and our
//! wire format use `[out, in]`. The conversion happens here and only here, so every
//! [`ParamSet`] in Harambee follows PyTorch's convention and released weights load there.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use harambee_params::{Layout, ParamSet, transpose};

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

/// Collects the gradient of each parameter, in the layout's order and convention.
struct GradCollector<'a> {
    path: Path,
    grads: &'a burn::tensor::Gradients,
    values: Vec<f32>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let n: usize = shape.iter().product();
        // A parameter the loss does not reach has a zero gradient.
        let data: Vec<f32> = match tensor.grad(self.grads) {
            Some(g) => g.into_data().iter::<f32>().collect(),
            None => vec![0.0; n],
        };
        if self.path.is_linear_weight() && shape.len() == 2 {
            self.values.extend(transpose(&data, shape[0], shape[1]));
        } else {
            self.values.extend(data);
        }
    }
}

/// The gradients of the module's parameters, flat in `layout`'s order and PyTorch's convention.
pub(crate) fn export_grads<M: Module>(
    module: &M,
    grads: &burn::tensor::Gradients,
    layout: &Layout,
) -> Vec<f32> {
    let mut c = GradCollector {
        path: Path::default(),
        grads,
        values: Vec::with_capacity(layout.num_values()),
    };
    module.visit(&mut c);
    c.values
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

/// FedProx's proximal term `μ/2 ‖w − w_anchor‖²`, added to the loss so that autodiff gives
/// its exact gradient `μ (w − w_anchor)` to whatever optimiser runs.
pub(crate) struct ProximalTerm {
    anchors: Vec<Tensor<1>>,
    half_mu: f32,
}

/// Flattened copies of the module's parameters, taken before local training.
struct AnchorCollector(Vec<Tensor<1>>);

impl ModuleVisitor for AnchorCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Copied out of the autodiff graph: an anchor is a constant, never a tracked node.
        self.0
            .push(Tensor::from_inner(param.val().inner().flatten(0, D - 1)));
    }
}

/// Sums `‖w − anchor‖²` over the parameters, tracked for autodiff.
struct DistanceCollector<'a> {
    anchors: &'a [Tensor<1>],
    next: usize,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for DistanceCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let diff = param.val().flatten(0, D - 1) - self.anchors[self.next].clone();
        self.next += 1;
        let sq = (diff.clone() * diff).sum();
        self.total = Some(match self.total.take() {
            Some(t) => t + sq,
            None => sq,
        });
    }
}

impl ProximalTerm {
    pub(crate) fn new<M: Module>(module: &M, mu: f32) -> Self {
        let mut c = AnchorCollector(Vec::new());
        module.visit(&mut c);
        Self {
            anchors: c.0,
            half_mu: mu / 2.0,
        }
    }

    /// `μ/2 ‖w − w_anchor‖²` for the module's current parameters.
    pub(crate) fn penalty<M: Module>(&self, module: &M) -> Option<Tensor<1>> {
        let mut c = DistanceCollector {
            anchors: &self.anchors,
            next: 0,
            total: None,
        };
        module.visit(&mut c);
        c.total.map(|t| t * self.half_mu)
    }
}
