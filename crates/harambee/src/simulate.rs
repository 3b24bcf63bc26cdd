//! `harambee simulate`.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use harambee_learn::Optimizer;
use harambee_sim::{MetricsWriter, RoundRecord, SimConfig, Simulation, Summary, Workload};
use harambee_strategy::ParticipantId;

use crate::cli::SimulateArgs;
use crate::progress::RoundProgress;

pub(crate) fn run(args: SimulateArgs, process_start: Instant) -> Result<()> {
    if let Some(dir) = args.model.as_deref().and_then(crate::llm::model_dir) {
        return crate::llm::simulate(args, dir, process_start);
    }
    let compare_local = args.compare_local;
    let config = config_from(args, SimConfig::default())?;
    let workload = Workload::load(&config)?;
    eprintln!(
        "simulating {} on {} ({} training / {} test examples from {}), {} participants, {} partition, {}",
        config.model,
        config.dataset,
        workload.split.train.len(),
        workload.split.test.len(),
        workload.source.display(),
        config.clients,
        config.partition,
        config.strategy,
    );
    let mut sim = Simulation::with_start(config.clone(), workload, process_start)?;
    let mut writer = config
        .out
        .as_deref()
        .map(MetricsWriter::create)
        .transpose()?;
    let mut write_error = None;
    let mut secagg = SecAggTotals::default();
    let mut last_loss = None;
    let mut record = |r: &RoundRecord| {
        secagg.add(r);
        last_loss = r.loss.or(last_loss);
        if let Some(w) = writer.as_mut()
            && let Err(e) = w.record(r)
        {
            write_error.get_or_insert(e);
        }
    };
    let summary = sim.run(&mut RoundProgress::new(config.rounds, Some(&mut record)))?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if let Some(w) = &writer {
        w.summary(&summary)?;
        let model = w.path("model.safetensors");
        fs::write(&model, sim.global().to_safetensors()?)
            .with_context(|| format!("writing {}", model.display()))?;
    }
    match (config.model, last_loss) {
        // A language model's figure is its loss; next-character accuracy per character of
        // the alphabet would be a 96-line table of little use.
        (harambee_learn::ModelKind::CharTransformer(_), Some(loss)) => {
            let unit = if summary.per_language.is_empty() {
                "char"
            } else {
                "byte"
            };
            println!(
                "\nvalidation loss {loss:.4} nats/{unit} ({:.4} bits/{unit})",
                loss / std::f64::consts::LN_2
            );
            print_per_language(&summary.per_language);
        }
        _ => print_per_class(&sim, &summary),
    }
    print_summary(&summary, config.out.as_deref());
    secagg.print(config.secure_aggregation);
    print_privacy(&config, &summary);
    if compare_local {
        compare_with_local(&sim, &summary)?;
    }
    Ok(())
}

/// The multilingual model's bits per character, language by language.
fn print_per_language(languages: &[harambee_sim::LanguageLoss]) {
    if languages.is_empty() {
        return;
    }
    println!(
        "\n{:<36} {:>7} {:>10} {:>10} {:>10}",
        "language", "region", "bytes/char", "bits/byte", "bits/char"
    );
    for l in languages {
        println!(
            "{:<36} {:>7} {:>10.2} {:>10.3} {:>10.3}",
            format!("{} ({})", l.name, l.code),
            l.region,
            l.bytes as f64 / l.chars.max(1) as f64,
            l.nats_per_byte / std::f64::consts::LN_2,
            l.bits_per_char
        );
    }
}

/// What secure aggregation cost over the run.
#[derive(Default)]
struct SecAggTotals {
    rounds: u64,
    client_s: f64,
    server_s: f64,
    round_s: f64,
    extra_bytes: u64,
    participants: usize,
}

impl SecAggTotals {
    fn add(&mut self, r: &RoundRecord) {
        self.rounds += 1;
        self.client_s += r.secagg_client_s;
        self.server_s += r.secagg_server_s;
        self.round_s += r.wall_s - r.eval_s;
        self.extra_bytes += r.secagg_extra_bytes;
        self.participants += r.participants;
    }

    fn print(&self, on: bool) {
        if !on || self.rounds == 0 {
            return;
        }
        let per = |x: f64| x / self.rounds as f64;
        let participants = (self.participants as f64 / self.rounds as f64).max(1.0);
        println!(
            "secure aggregation: {:.3}s of participants' CPU per round ({:.1} ms each, {} participants), {:.3}s of the coordinator's; {:.3}s per round without evaluation; {} extra bytes sent per participant",
            per(self.client_s),
            1000.0 * per(self.client_s) / participants,
            participants.round(),
            per(self.server_s),
            per(self.round_s),
            self.extra_bytes / self.rounds,
        );
    }
}

/// For DP-FedAvg: the participant-level (ε, δ) spent, by the RDP accountant, with δ = 1/K.
fn print_privacy(config: &SimConfig, s: &Summary) {
    if let harambee_strategy::StrategyConfig::DpFedAvg {
        noise_multiplier, ..
    } = config.strategy
    {
        let delta = 1.0 / config.clients as f64;
        // FedBuff's members are not a Poisson sample of the federation (who trains next
        // follows from who finished), so its versions get no amplification by sampling.
        let sampling = match config.fedbuff {
            Some(_) => 1.0,
            None => config.fraction,
        };
        let mut accountant = harambee_strategy::privacy::RdpAccountant::default();
        accountant.compose_subsampled_gaussian(sampling, noise_multiplier, s.rounds);
        let (epsilon, order) = accountant.epsilon(delta);
        println!(
            "privacy: ({epsilon:.2}, {delta:.0e})-DP per participant over {} rounds (sampling {}, noise multiplier {noise_multiplier}; RDP order {order})",
            s.rounds, sampling
        );
    }
}

/// Test accuracy per class (per digit, or per language with its name and region).
fn print_per_class(sim: &Simulation, s: &Summary) {
    let languages = sim.workload().languages.as_deref().unwrap_or(&[]);
    println!(
        "\n{:<14} {:<34} {:>9} {:>6}",
        "class", "name", "accuracy", "n"
    );
    for (i, (class, correct, total)) in s.per_class.iter().enumerate() {
        let name = languages
            .get(i)
            .map_or(String::new(), |l| format!("{} ({})", l.name, l.region));
        let acc = *correct as f64 / (*total).max(1) as f64;
        println!("{class:<14} {name:<34} {:>8.1}% {total:>6}", 100.0 * acc);
    }
}

fn print_summary(s: &Summary, out: Option<&Path>) {
    println!();
    match (s.rounds_to_target, s.target_accuracy) {
        (Some(r), Some(t)) => println!("reached {t} test accuracy in {r} rounds"),
        (None, Some(t)) => println!("did not reach {t} test accuracy in {} rounds", s.rounds),
        _ => {}
    }
    if s.config.timing.is_some() {
        match s.sim_time_to_target_s {
            Some(t) => println!(
                "simulated time: {:.0} s to the target, {:.0} s in all",
                t, s.sim_time_s
            ),
            None => println!("simulated time: {:.0} s in all", s.sim_time_s),
        }
    }
    println!(
        "final accuracy {:.4} (best {:.4}) after {} rounds; {:.3}s per round; start-up {:.3}s; total {:.1}s; peak memory {:.0} MiB",
        s.final_accuracy,
        s.best_accuracy,
        s.rounds,
        s.mean_round_s,
        s.startup_s,
        s.total_s,
        s.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    );
    println!("final model digest {}", s.final_digest);
    if let Some(out) = out {
        println!(
            "results in {} (rounds.jsonl, rounds.csv, summary.json, model.safetensors)",
            out.display()
        );
    }
}

/// The federation against each participant's local-only model, on the whole test set.
fn compare_with_local(sim: &Simulation, summary: &Summary) -> Result<()> {
    let ids: Vec<ParticipantId> = (0..sim.participants().len() as u64)
        .map(ParticipantId)
        .collect();
    eprintln!("training {} local-only models for comparison...", ids.len());
    let baselines = sim.local_baselines(&ids)?;
    println!("\n{:<12} {:>10}  classes held", "participant", "accuracy");
    let mut best_local = 0.0f64;
    for b in &baselines {
        best_local = best_local.max(b.evaluation.accuracy);
        println!(
            "{:<12} {:>10.4}  {}",
            b.participant.to_string(),
            b.evaluation.accuracy,
            b.classes.join(" ")
        );
    }
    println!(
        "{:<12} {:>10.4}  all, through the federation",
        "federated", summary.final_accuracy
    );
    if summary.final_accuracy > best_local {
        println!(
            "the federated model beats every local-only model ({:.4} > {:.4})",
            summary.final_accuracy, best_local
        );
    } else {
        println!(
            "the federated model does NOT beat the best local-only model ({:.4} <= {:.4})",
            summary.final_accuracy, best_local
        );
    }
    Ok(())
}

/// Simulated time from the flags, on top of a settings file's `[timing]`: any timing flag
/// turns the clock on.
fn timing(
    t: &crate::cli::TimeArgs,
    from_file: Option<harambee_sim::Timing>,
) -> Result<Option<harambee_sim::Timing>> {
    let any = t.simulated_time
        || t.speed_sigma.is_some()
        || t.slow_tail.is_some()
        || t.uplink_mbps.is_some()
        || t.downlink_mbps.is_some()
        || t.over_select.is_some()
        || t.virtual_deadline_s.is_some()
        || t.seconds_per_example.is_some();
    if !any {
        return Ok(from_file);
    }
    let mut timing = from_file.unwrap_or_default();
    if let Some(v) = t.speed_sigma {
        timing.sigma = v;
    }
    if let Some(tail) = &t.slow_tail {
        let (fraction, factor) = tail
            .split_once(':')
            .context("--slow-tail is FRACTION:FACTOR, e.g. 0.1:10")?;
        timing.slow_fraction = fraction.parse().context("--slow-tail's fraction")?;
        timing.slow_factor = factor.parse().context("--slow-tail's factor")?;
    }
    if let Some(v) = t.uplink_mbps {
        timing.uplink_mbps = v;
    }
    if let Some(v) = t.downlink_mbps {
        timing.downlink_mbps = v;
    }
    if let Some(v) = t.over_select {
        timing.over_select = v;
    }
    if let Some(v) = t.seconds_per_example {
        timing.seconds_per_example = v;
    }
    if t.virtual_deadline_s.is_some() {
        timing.deadline_s = t.virtual_deadline_s;
    }
    Ok(Some(timing))
}

/// Settings from `--config` (if any, else `defaults`) with flags on top.
pub(crate) fn config_from(args: SimulateArgs, defaults: SimConfig) -> Result<SimConfig> {
    let mut c = match &args.config {
        Some(path) => {
            let text =
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<SimConfig>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => defaults,
    };
    macro_rules! set {
        ($field:ident) => {
            if let Some(v) = args.$field {
                c.$field = v;
            }
        };
        ($field:ident, parse) => {
            if let Some(v) = args.$field.as_deref() {
                c.$field = v.parse()?;
            }
        };
    }
    set!(dataset, parse);
    set!(model, parse);
    set!(partition, parse);
    set!(strategy, parse);
    set!(update_encoding, parse);
    set!(download_encoding, parse);
    set!(clients);
    set!(fraction);
    set!(epochs);
    set!(local_steps);
    set!(batch);
    set!(lr);
    set!(rounds);
    set!(seed);
    set!(eval_every);
    set!(dropout);
    set!(quorum);
    set!(attackers);
    set!(secagg_range);
    set!(languages);
    if let Some(v) = args.attack.as_deref() {
        c.attack = Some(v.parse()?);
    }
    if let Some(v) = args.optimizer.as_deref() {
        c.optimizer = parse_optimizer(v)?;
    }
    c.burn_only |= args.burn_only;
    c.timing = timing(&args.time, c.timing.take())?;
    if let Some(v) = args.fedbuff.as_deref() {
        c.fedbuff = Some(v.parse()?);
    }
    if args.data_dir.is_some() {
        c.data_dir = args.data_dir;
    }
    if args.target_accuracy.is_some() {
        c.target_accuracy = args.target_accuracy;
    }
    if args.out.is_some() {
        c.out = args.out;
    }
    if let Some(p) = args.privacy.as_deref() {
        p.parse::<harambee_sim::PrivacySettings>()?
            .apply_to(&mut c)?;
    }
    if c.model == harambee_learn::ModelKind::LangId && c.dataset != harambee_sim::DatasetName::Udhr
    {
        bail!("--model langid needs --dataset udhr");
    }
    c.validate()?;
    Ok(c)
}

fn parse_optimizer(s: &str) -> Result<Optimizer> {
    Ok(match s.split_once(':') {
        None if s == "sgd" => Optimizer::Sgd { momentum: 0.0 },
        None if s == "adamw" => Optimizer::AdamW { weight_decay: 0.0 },
        Some(("sgd", m)) => Optimizer::Sgd {
            momentum: m.parse().context("sgd:MOMENTUM needs a number")?,
        },
        Some(("adamw", wd)) => Optimizer::AdamW {
            weight_decay: wd.parse().context("adamw:DECAY needs a number")?,
        },
        _ => bail!("unknown optimizer {s:?}; use sgd, sgd:MOMENTUM, adamw or adamw:DECAY"),
    })
}
