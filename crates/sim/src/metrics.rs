use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{SimConfig, SimError};

/// What one round did and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The round, from 1.
    pub round: u64,
    /// Test accuracy after the round (`null` when not evaluated this round).
    pub accuracy: Option<f64>,
    /// Test loss after the round.
    pub loss: Option<f64>,
    /// Mean local training loss of the participants.
    pub train_loss: f64,
    /// Seconds for the whole round, evaluation included.
    pub wall_s: f64,
    /// Seconds of local training (all participants, in parallel).
    pub train_s: f64,
    /// Seconds to validate and aggregate the results.
    pub aggregate_s: f64,
    /// Seconds of test-set evaluation.
    pub eval_s: f64,
    /// Bytes that would travel from participants (f32 updates).
    pub bytes_up: u64,
    /// Bytes that would travel to participants (the global model).
    pub bytes_down: u64,
    /// Participants whose results were aggregated.
    pub participants: usize,
    /// Selected participants that vanished (with `--dropout`), over all attempts at the round.
    pub dropped: usize,
    /// Times the round was opened again for lack of a quorum.
    pub retries: u32,
    /// Secure aggregation: participants' CPU seconds in the protocol, summed (0 when off).
    #[serde(default)]
    pub secagg_client_s: f64,
    /// Secure aggregation: the coordinator's seconds in the protocol.
    #[serde(default)]
    pub secagg_server_s: f64,
    /// Secure aggregation: bytes each participant sent beyond its masked update, on average.
    #[serde(default)]
    pub secagg_extra_bytes: u64,
    /// Simulated time: seconds from the first round's opening to this round's close, as the
    /// participants' speeds and links and the way rounds wait make it (0 without `timing`).
    #[serde(default)]
    pub sim_clock_s: f64,
}

/// The outcome of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Rounds played.
    pub rounds: u64,
    /// The first round whose test accuracy reached the target, if any.
    pub rounds_to_target: Option<u64>,
    /// The target, if one was set.
    pub target_accuracy: Option<f64>,
    /// Accuracy after the last evaluated round.
    pub final_accuracy: f64,
    /// Best accuracy seen.
    pub best_accuracy: f64,
    /// Seconds from start-up to the end.
    pub total_s: f64,
    /// Seconds from process start (or the simulation's creation) to the first round opening.
    pub startup_s: f64,
    /// Mean seconds per round.
    pub mean_round_s: f64,
    /// Simulated time (with `timing`): seconds until the target accuracy was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_time_to_target_s: Option<f64>,
    /// Simulated time (with `timing`): seconds until the last round closed.
    #[serde(default)]
    pub sim_time_s: f64,
    /// Peak resident memory of the process, in bytes (Linux; 0 where unknown).
    pub peak_rss_bytes: u64,
    /// Per class (digit, language): (correct, total) on the test set after the last round.
    pub per_class: Vec<(String, usize, usize)>,
    /// The multilingual language model (`udhr-text`): each language's held-out bits per
    /// character after the last round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_language: Vec<harambee_learn::multilingual::LanguageLoss>,
    /// Digest of the final global parameters.
    pub final_digest: String,
    /// The configuration that produced this.
    pub config: SimConfig,
}

/// Writes `rounds.jsonl`, `rounds.csv` and `summary.json` into a directory as a run goes.
pub struct MetricsWriter {
    dir: PathBuf,
    jsonl: BufWriter<File>,
    csv: csv::Writer<File>,
}

impl MetricsWriter {
    /// Creates the directory (if needed) and the round files.
    pub fn create(dir: &Path) -> Result<Self, SimError> {
        let err = |path: &Path, e: &dyn std::fmt::Display| SimError::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
        let jsonl_path = dir.join("rounds.jsonl");
        let jsonl = File::create(&jsonl_path).map_err(|e| err(&jsonl_path, &e))?;
        let csv_path = dir.join("rounds.csv");
        let csv = csv::Writer::from_path(&csv_path).map_err(|e| err(&csv_path, &e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            jsonl: BufWriter::new(jsonl),
            csv,
        })
    }

    /// Appends one round to both files, flushed so a killed run keeps what it measured.
    pub fn record(&mut self, record: &RoundRecord) -> Result<(), SimError> {
        let err = |name: &str, e: &dyn std::fmt::Display| SimError::Output {
            path: self.dir.join(name),
            reason: e.to_string(),
        };
        let line = serde_json::to_string(record).map_err(|e| err("rounds.jsonl", &e))?;
        writeln!(self.jsonl, "{line}")
            .and_then(|()| self.jsonl.flush())
            .map_err(|e| err("rounds.jsonl", &e))?;
        self.csv
            .serialize(record)
            .map_err(|e| err("rounds.csv", &e))?;
        self.csv.flush().map_err(|e| err("rounds.csv", &e))?;
        Ok(())
    }

    /// Writes `summary.json`.
    pub fn summary(&self, summary: &Summary) -> Result<(), SimError> {
        let path = self.dir.join("summary.json");
        let text = serde_json::to_string_pretty(summary).map_err(|e| SimError::Output {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&path, text).map_err(|e| SimError::Output {
            path,
            reason: e.to_string(),
        })
    }

    /// A file next to the metrics.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The process's peak resident set size (`VmHWM` on Linux), or 0 where it cannot be read.
pub fn peak_rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
