//! Progress on the terminal: a bar per round while participants train, then one line per
//! round that stays.

use std::io::IsTerminal;

use harambee_sim::{Observer, RoundRecord};
use indicatif::{ProgressBar, ProgressStyle};

/// Shows a federation's progress, and forwards each round to `inner` (e.g. a metrics file).
pub(crate) struct RoundProgress<'a> {
    rounds: u64,
    bar: Option<ProgressBar>,
    inner: Option<&'a mut dyn FnMut(&RoundRecord)>,
    interactive: bool,
    show_loss: bool,
}

impl<'a> RoundProgress<'a> {
    pub(crate) fn new(rounds: u64, inner: Option<&'a mut dyn FnMut(&RoundRecord)>) -> Self {
        Self {
            rounds,
            bar: None,
            inner,
            interactive: std::io::stderr().is_terminal(),
            show_loss: false,
        }
    }

    /// Shows each round's held-out loss (a language model's figure) rather than accuracy.
    pub(crate) fn with_loss(mut self) -> Self {
        self.show_loss = true;
        self
    }
}

impl Observer for RoundProgress<'_> {
    fn round_opened(&mut self, round: u64, participants: usize) {
        if !self.interactive {
            return;
        }
        let bar = ProgressBar::new(participants as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "round {prefix} [{bar:30}] {pos}/{len} participants trained {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{round}/{}", self.rounds));
        self.bar = Some(bar);
    }

    fn participant_trained(&mut self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn round_closed(&mut self, r: &RoundRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let accuracy = if self.show_loss {
            r.loss.map_or_else(
                || "held-out loss   -   ".to_string(),
                |l| format!("held-out loss {l:.4}"),
            )
        } else {
            r.accuracy.map_or_else(
                || "accuracy   -   ".to_string(),
                |a| format!("accuracy {a:.4}"),
            )
        };
        let dropped = if r.dropped > 0 {
            format!(" ({} dropped, {} retries)", r.dropped, r.retries)
        } else {
            String::new()
        };
        eprintln!(
            "round {:>4}/{}  {accuracy}  train loss {:.4}  {} participants{dropped}  {:.3}s (train {:.3}s, aggregate {:.4}s, eval {:.3}s)",
            r.round,
            self.rounds,
            r.train_loss,
            r.participants,
            r.wall_s,
            r.train_s,
            r.aggregate_s,
            r.eval_s
        );
        if let Some(inner) = self.inner.as_mut() {
            inner(r);
        }
    }
}
