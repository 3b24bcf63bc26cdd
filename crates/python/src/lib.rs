//! The Python package `harambee` (its native part, `harambee._harambee`): a member joins a
//! federation with its own training loop in Python, and everything that must be right (TLS,
//! keys, signatures, the protocol, retries, secure aggregation, state across restarts) runs
//! in the Rust participant runtime, [`harambee_participant`].
//!
//! `join` hands the member's `fit` and `evaluate` to the runtime as a
//! [`harambee_participant::LocalTrainer`]; the runtime waits on the network with the GIL
//! released and takes it only to call them. Parameters cross as NumPy arrays
//! ([`arrays`]): no copy on the way in, one checked copy on the way out.

mod arrays;
mod trainer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use harambee_identity::Identity;
use harambee_participant::{Invite, JoinOptions, ParticipantError, Training};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::trainer::PythonTrainer;

create_exception!(
    _harambee,
    HarambeeError,
    PyException,
    "Every error of the Harambee runtime."
);
create_exception!(
    _harambee,
    SetupError,
    HarambeeError,
    "A setting, key, invite or state file is wrong."
);
create_exception!(
    _harambee,
    RefusedError,
    HarambeeError,
    "The coordinator refused a call, for a reason retrying cannot fix."
);
create_exception!(
    _harambee,
    UnreachableError,
    HarambeeError,
    "The coordinator stayed unreachable longer than `give_up_after_s`."
);
create_exception!(
    _harambee,
    ModelMismatchError,
    HarambeeError,
    "The federation's model is not one this participant can train."
);
create_exception!(
    _harambee,
    InvalidUpdateError,
    HarambeeError,
    "`fit` or `evaluate` returned something the federation cannot take: a missing or unknown tensor, a wrong shape or dtype, NaN, a count that is not positive. Nothing was sent."
);

/// What a participant did, as `join` returns it.
#[pyclass(frozen, get_all, module = "harambee")]
struct JoinReport {
    /// Its id in the federation.
    participant_id: u64,
    /// Rounds whose update the coordinator acknowledged.
    acknowledged: Vec<u64>,
    /// Rounds whose update was refused, with the reason.
    refused: Vec<(u64, String)>,
    /// How the federation ended, as the coordinator said.
    finish_message: String,
    /// Per `fit` call: (round, seconds inside `fit`, seconds the runtime spent handing the
    /// parameters over and checking and copying what came back).
    fit_timings: Vec<(u64, f64, f64)>,
}

#[pymethods]
impl JoinReport {
    fn __repr__(&self) -> String {
        format!(
            "JoinReport(participant_id={}, acknowledged={:?}, refused={:?}, finish_message={:?}, fit_timings=[{} calls])",
            self.participant_id,
            self.acknowledged,
            self.refused,
            self.finish_message,
            self.fit_timings.len()
        )
    }
}

/// Joins the federation of `invite` with the key at `key`, and trains with `fit` (and
/// reports `evaluate`) every round this member is selected for, until the federation
/// finishes.
#[pyfunction]
#[pyo3(signature = (
    invite, key, *, fit, evaluate=None, data=None, name=None, state=None, coordinator=None,
    insecure=false, give_up_after_s=300.0
))]
#[allow(clippy::too_many_arguments)]
fn join(
    py: Python<'_>,
    invite: PathBuf,
    key: PathBuf,
    fit: Py<PyAny>,
    evaluate: Option<Py<PyAny>>,
    data: Option<Py<PyAny>>,
    name: Option<String>,
    state: Option<PathBuf>,
    coordinator: Option<String>,
    insecure: bool,
    give_up_after_s: f64,
) -> PyResult<JoinReport> {
    init_logging();
    if !fit.bind(py).is_callable() {
        return Err(SetupError::new_err("fit must be callable"));
    }
    let invite = Invite::load(&invite).map_err(|e| SetupError::new_err(e.to_string()))?;
    let identity = Identity::load(&key).map_err(|e| SetupError::new_err(e.to_string()))?;
    let trainer = Arc::new(PythonTrainer {
        fit,
        evaluate,
        data,
        failure: Mutex::new(None),
        timings: Mutex::new(Vec::new()),
    });
    let options = JoinOptions {
        invite,
        coordinator,
        identity,
        training: Training::Own(trainer.clone()),
        name: name.unwrap_or_else(|| "python participant".into()),
        state_path: state.unwrap_or_else(|| state_beside(&key)),
        insecure,
        give_up_after: Duration::from_secs_f64(give_up_after_s.max(1.0)),
    };
    let outcome = py.detach(|| run(options));
    // The member's own exception (from fit or evaluate) is raised as it was, traceback and all.
    if let Some(error) = trainer
        .failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(error);
    }
    match outcome {
        Ok(report) => Ok(JoinReport {
            participant_id: report.participant_id,
            acknowledged: report.acknowledged,
            refused: report.refused,
            finish_message: report.finish_message,
            fit_timings: std::mem::take(
                &mut *trainer
                    .timings
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
        }),
        Err(Stop::Runtime(e)) => Err(to_python_error(e)),
        Err(Stop::Interrupted(e)) => Err(e),
    }
}

/// Why the runtime stopped.
enum Stop {
    Runtime(ParticipantError),
    /// A signal handler raised (Ctrl-C: `KeyboardInterrupt`).
    Interrupted(PyErr),
}

/// Runs the participant on a runtime of its own, watching for Ctrl-C: Python runs its signal
/// handlers only when asked, and nothing here would ask while the network is awaited.
fn run(options: JoinOptions) -> Result<harambee_participant::JoinReport, Stop> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Stop::Runtime(ParticipantError::Setup(e.to_string())))?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            report = harambee_participant::join(options) => report.map_err(Stop::Runtime),
            interrupted = signals() => Err(Stop::Interrupted(interrupted)),
        }
    });
    // A `fit` still running in a blocking thread must not hold up the exception.
    runtime.shutdown_background();
    outcome
}

/// Resolves when a Python signal handler raises.
async fn signals() -> PyErr {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            return e;
        }
    }
}

fn to_python_error(error: ParticipantError) -> PyErr {
    let message = error.to_string();
    match error {
        ParticipantError::Setup(_) => SetupError::new_err(message),
        ParticipantError::Refused { .. } => RefusedError::new_err(message),
        ParticipantError::GaveUp { .. } => UnreachableError::new_err(message),
        ParticipantError::Model(_) => ModelMismatchError::new_err(message),
        _ => HarambeeError::new_err(message),
    }
}

/// Writes a new ed25519 key to `path` (owner-only; an existing file is never overwritten)
/// and returns its public key in hex.
#[pyfunction]
fn keygen(path: PathBuf) -> PyResult<String> {
    let identity = Identity::generate().map_err(|e| SetupError::new_err(e.to_string()))?;
    identity
        .save(&path)
        .map_err(|e| SetupError::new_err(e.to_string()))?;
    Ok(identity.public().to_string())
}

/// The public key (hex) of the key file at `path`.
#[pyfunction]
fn public_key(path: PathBuf) -> PyResult<String> {
    let identity = Identity::load(&path).map_err(|e| SetupError::new_err(e.to_string()))?;
    Ok(identity.public().to_string())
}

/// Where `join` keeps its progress by default: beside the key, as `harambee join` does.
fn state_beside(key: &Path) -> PathBuf {
    let mut name = key.file_name().unwrap_or_default().to_os_string();
    name.push(".state.json");
    key.with_file_name(name)
}

/// The runtime's log lines on stderr, filtered by `HARAMBEE_LOG` (default `info`).
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("HARAMBEE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another library may have installed a subscriber first; then its rules apply.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
    });
}

/// The native module.
#[pymodule]
fn _harambee(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(join, m)?)?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(public_key, m)?)?;
    m.add_class::<JoinReport>()?;
    m.add("HarambeeError", py.get_type::<HarambeeError>())?;
    m.add("SetupError", py.get_type::<SetupError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    m.add("UnreachableError", py.get_type::<UnreachableError>())?;
    m.add("ModelMismatchError", py.get_type::<ModelMismatchError>())?;
    m.add("InvalidUpdateError", py.get_type::<InvalidUpdateError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
