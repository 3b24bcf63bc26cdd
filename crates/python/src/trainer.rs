//! The member's `fit` and `evaluate` as the runtime's [`LocalTrainer`].

use std::sync::Mutex;
use std::time::Instant;

use harambee_learn::Evaluation;
use harambee_params::ParamSet;
use harambee_participant::{Fitted, LocalTrainer, ParticipantError, RoundSpec};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyTuple};

use crate::arrays::{from_python, invalid, to_python, type_name};

/// Calls back into Python from the runtime's blocking threads, one call at a time.
pub(crate) struct PythonTrainer {
    pub(crate) fit: Py<PyAny>,
    pub(crate) evaluate: Option<Py<PyAny>>,
    /// Handed to both as `config["data"]`.
    pub(crate) data: Option<Py<PyAny>>,
    /// The Python exception that stopped the runtime, raised again from `join` as it was.
    pub(crate) failure: Mutex<Option<PyErr>>,
    /// Per round: seconds inside the member's `fit`, and seconds crossing the boundary (the
    /// parameters in and out, the checks): what the Python path costs over a Rust trainer.
    pub(crate) timings: Mutex<Vec<(u64, f64, f64)>>,
}

impl PythonTrainer {
    /// Keeps `error` to raise from `join`, and stops the runtime with its message.
    fn fail(&self, what: &str, error: PyErr) -> ParticipantError {
        let message = format!("{what}: {error}");
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
        ParticipantError::Model(message)
    }

    /// The round's settings as the dict `fit` and `evaluate` receive.
    fn config<'py>(&self, py: Python<'py>, round: &RoundSpec) -> PyResult<Bound<'py, PyDict>> {
        let config = PyDict::new(py);
        config.set_item("round", round.round)?;
        config.set_item("epochs", round.fit.epochs)?;
        config.set_item("batch_size", round.fit.batch_size)?;
        config.set_item("learning_rate", round.fit.learning_rate)?;
        config.set_item("local_steps", round.fit.local_steps)?;
        config.set_item("proximal_mu", round.fit.proximal_mu)?;
        config.set_item("seed", round.seed)?;
        config.set_item("shard", round.shard)?;
        config.set_item("data", self.data.as_ref().map(|d| d.bind(py)))?;
        Ok(config)
    }

    fn call_fit(&self, py: Python<'_>, global: ParamSet, round: &RoundSpec) -> PyResult<Fitted> {
        let entered = Instant::now();
        let layout = global.layout().clone();
        let parameters = to_python(py, global)?;
        let config = self.config(py, round)?;
        let called = Instant::now();
        let returned = self.fit.bind(py).call1((parameters, config))?;
        let returned_at = Instant::now();
        let (parameters, num_samples, metrics) = triple(&returned, "fit", "parameters")?;
        let params = from_python(&parameters, &layout)?;
        let in_fit = (returned_at - called).as_secs_f64();
        let crossing = (called - entered + returned_at.elapsed()).as_secs_f64();
        self.timings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((round.round, in_fit, crossing));
        let num_samples = count(&num_samples, "fit", "num_samples")?;
        let metrics = numbers(&metrics, "fit")?;
        let train_loss = match metric(&metrics, "loss")? {
            Some(loss) if !loss.is_finite() => {
                return Err(invalid(format!("fit's metrics[\"loss\"] is {loss}")));
            }
            Some(loss) => loss as f32,
            None => 0.0,
        };
        Ok(Fitted {
            params,
            num_samples,
            train_loss,
        })
    }

    fn call_evaluate(
        &self,
        py: Python<'_>,
        evaluate: &Py<PyAny>,
        global: ParamSet,
        round: &RoundSpec,
    ) -> PyResult<Option<Evaluation>> {
        let parameters = to_python(py, global)?;
        let config = self.config(py, round)?;
        let returned = evaluate.bind(py).call1((parameters, config))?;
        if returned.is_none() {
            return Ok(None);
        }
        let (loss, examples, metrics) = triple(&returned, "evaluate", "loss")?;
        let loss: f64 = loss.extract().map_err(|_| {
            invalid(format!(
                "evaluate's loss must be a number, not {}",
                type_name(&loss)
            ))
        })?;
        if !(loss.is_finite() && loss >= 0.0) {
            return Err(invalid(format!(
                "evaluate's loss is {loss}; it must be finite and not negative"
            )));
        }
        let examples = count(&examples, "evaluate", "num_examples")?;
        let metrics = numbers(&metrics, "evaluate")?;
        let Some(accuracy) = metric(&metrics, "accuracy")? else {
            tracing::warn!(
                "evaluate returned no metrics[\"accuracy\"], which the coordinator's reports need; this evaluation is not reported"
            );
            return Ok(None);
        };
        if !(0.0..=1.0).contains(&accuracy) {
            return Err(invalid(format!(
                "evaluate's metrics[\"accuracy\"] is {accuracy}; it must be in [0, 1]"
            )));
        }
        Ok(Some(Evaluation {
            loss,
            accuracy,
            examples: usize::try_from(examples).unwrap_or(usize::MAX),
            per_class: Vec::new(),
        }))
    }
}

impl LocalTrainer for PythonTrainer {
    fn fit(&self, global: ParamSet, round: &RoundSpec) -> Result<Fitted, ParticipantError> {
        Python::attach(|py| self.call_fit(py, global, round))
            .map_err(|e| self.fail(&format!("round {}: fit", round.round), e))
    }

    fn evaluate(
        &self,
        global: ParamSet,
        round: &RoundSpec,
    ) -> Result<Option<Evaluation>, ParticipantError> {
        let Some(evaluate) = &self.evaluate else {
            return Ok(None);
        };
        Python::attach(|py| self.call_evaluate(py, evaluate, global, round))
            .map_err(|e| self.fail(&format!("round {}: evaluate", round.round), e))
    }
}

/// A returned `(first, count, metrics)` tuple.
fn triple<'py>(
    returned: &Bound<'py, PyAny>,
    what: &str,
    first: &str,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let shape_error = || {
        invalid(format!(
            "{what} must return ({first}, num_samples, metrics), not {}",
            type_name(returned)
        ))
    };
    let tuple = returned.cast::<PyTuple>().map_err(|_| shape_error())?;
    if tuple.len() != 3 {
        return Err(shape_error());
    }
    Ok((tuple.get_item(0)?, tuple.get_item(1)?, tuple.get_item(2)?))
}

/// A count the member's code returned: a positive integer (it weighs the update in FedAvg;
/// the coordinator bounds it too).
fn count(value: &Bound<'_, PyAny>, what: &str, field: &str) -> PyResult<u64> {
    let n: i128 = value.extract().map_err(|_| {
        invalid(format!(
            "{what}'s {field} must be an int, not {}",
            type_name(value)
        ))
    })?;
    if n <= 0 {
        return Err(invalid(format!(
            "{what}'s {field} is {n}; it must be a positive number of examples"
        )));
    }
    u64::try_from(n).map_err(|_| invalid(format!("{what}'s {field} {n} is too large")))
}

/// The metrics dict (`None` is an empty one).
fn numbers<'py>(value: &Bound<'py, PyAny>, what: &str) -> PyResult<Option<Bound<'py, PyMapping>>> {
    if value.is_none() {
        return Ok(None);
    }
    value
        .cast::<PyMapping>()
        .map(|m| Some(m.clone()))
        .map_err(|_| {
            invalid(format!(
                "{what}'s metrics must be a dict of numbers, not {}",
                type_name(value)
            ))
        })
}

/// One number of the metrics, if present.
fn metric(metrics: &Option<Bound<'_, PyMapping>>, name: &str) -> PyResult<Option<f64>> {
    let Some(metrics) = metrics else {
        return Ok(None);
    };
    if !metrics.contains(name)? {
        return Ok(None);
    }
    let value = metrics.get_item(name)?;
    value.extract::<f64>().map(Some).map_err(|_| {
        invalid(format!(
            "metrics[{name:?}] must be a number, not {}",
            type_name(&value)
        ))
    })
}
