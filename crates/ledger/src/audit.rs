use std::collections::{BTreeMap, BTreeSet};

use harambee_charter::{Amendment, Charter, Mode};
use harambee_identity::{PublicKey, SignedUpdate, TrainingRecipe, UpdateStatement};
use harambee_params::Digest;

use crate::{Entry, Ledger, TreeHead};

/// Something wrong found by [`audit`], with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The entry, when one is to blame.
    pub entry: Option<u64>,
    /// The round, when one is concerned.
    pub round: Option<u64>,
    /// What is wrong.
    pub problem: String,
}

/// A round as the ledger records it, for replay by an auditor who holds the update blobs.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditedRound {
    /// The round.
    pub round: u64,
    /// The strategy, as recorded.
    pub strategy: String,
    /// The parameters it started from.
    pub base: String,
    /// The committed updates it combined: participant, digest, sample count.
    pub inputs: Vec<(u64, String, u64)>,
    /// The resulting parameters' digest.
    pub output: String,
}

/// A buffered (FedBuff) step as the ledger records it, for replay by an auditor who holds
/// the update blobs and the versions' parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditedStep {
    /// The version it published.
    pub version: u64,
    /// The parameters of version `version − 1`.
    pub base: String,
    /// The results it applied, in arrival order: participant, the version it trained from,
    /// its staleness, its digest.
    pub inputs: Vec<(u64, u64, u64, String)>,
    /// The new parameters' digest.
    pub output: String,
}

/// The outcome of an audit.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// Everything found wrong; empty when the ledger verifies.
    pub findings: Vec<Finding>,
    /// The rounds, in order.
    pub rounds: Vec<AuditedRound>,
    /// A buffered federation's versions, in order.
    pub steps: Vec<AuditedStep>,
    /// The latest valid tree head.
    pub head: Option<TreeHead>,
    /// The coordinator key the tree heads were checked against.
    pub coordinator_key: Option<String>,
    /// The federation's id and its settings' SHA-256, from the genesis entry.
    pub genesis: Option<(String, String)>,
    /// Entries checked.
    pub entries: u64,
    /// Update commitments whose signatures verified.
    pub signatures_verified: u64,
    /// Amendments that took effect.
    pub amendments: u64,
    /// Fraud the ledger records, each with its evidence signed by the worker: (round,
    /// participant).
    pub frauds: Vec<(u64, u64)>,
}

impl Audit {
    fn find(&mut self, entry: Option<u64>, round: Option<u64>, problem: impl Into<String>) {
        self.findings.push(Finding {
            entry,
            round,
            problem: problem.into(),
        });
    }
}

fn key_of(hex_key: &str) -> Option<PublicKey> {
    hex_key.parse().ok()
}

fn digest_of(hex_digest: &str) -> Option<Digest> {
    Digest::from_hex(hex_digest)
}

/// The update statement a member signed, from the ledger's hex digests (`None` when one is
/// not a digest: nothing then verifies).
fn statement(
    federation: &str,
    round: u64,
    (base, update): (&str, &str),
    num_samples: u64,
    recipe: Option<TrainingRecipe>,
) -> Option<UpdateStatement> {
    Some(UpdateStatement {
        federation: federation.to_string(),
        round,
        base: digest_of(base)?,
        update: digest_of(update)?,
        num_samples,
        recipe,
    })
}

/// Whether `signature` (hex) is `key`'s (hex) over `statement`.
fn verify_signed(
    statement: Option<UpdateStatement>,
    key: Option<&String>,
    signature: &str,
) -> bool {
    (|| {
        let signed = SignedUpdate {
            statement: statement?,
            signer: key_of(key?)?,
            signature: hex::decode(signature).ok()?.try_into().ok()?,
        };
        signed.verify().ok()
    })()
    .is_some()
}

/// Under a verification rule every update carries the recipe of the round it was given:
/// its shard is its sender's rank among the selected, of as many shards as were selected.
fn check_recipe(
    a: &mut Audit,
    at: Option<u64>,
    charter: &Charter,
    round: u64,
    participant: u64,
    selected: &BTreeSet<u64>,
    recipe: Option<&TrainingRecipe>,
) {
    let r = Some(round);
    match (charter.verification.is_some(), recipe) {
        (false, None) => {}
        (false, Some(_)) => a.find(at, r, format!("round {round}: participant {participant}'s update carries a training recipe, but the charter sets no verification")),
        (true, None) => a.find(at, r, format!("round {round}: participant {participant}'s update carries no training recipe, but the charter requires verifiable training")),
        (true, Some(recipe)) => {
            let rank = selected.iter().position(|p| *p == participant);
            if rank != Some(recipe.shard_index as usize) || recipe.shard_count as usize != selected.len() {
                a.find(at, r, format!("round {round}: participant {participant} trained shard {} of {}, not its own shard of the {} selected", recipe.shard_index, recipe.shard_count, selected.len()));
            }
        }
    }
}

/// Checks a whole ledger offline. `trusted_key` pins the coordinator's key; without it the
/// key in the genesis entry is used (and reported, for the auditor to compare).
pub fn audit(entries: &[Vec<u8>], heads: &[TreeHead], trusted_key: Option<&PublicKey>) -> Audit {
    let mut a = Audit {
        entries: entries.len() as u64,
        ..Audit::default()
    };
    let ledger = Ledger::from_entries(entries.to_vec());
    let parsed: Vec<Option<Entry>> = entries
        .iter()
        .enumerate()
        .map(|(i, bytes)| match Entry::parse(bytes) {
            Ok(e) => Some(e),
            Err(e) => {
                a.find(Some(i as u64), None, e.to_string());
                None
            }
        })
        .collect();

    // The genesis entry names the federation and the coordinator's key.
    let Some(Some(Entry::Genesis {
        federation_id,
        coordinator_key,
        config_sha256,
        charter,
        ..
    })) = parsed.first()
    else {
        a.find(Some(0), None, "the first entry is not the genesis entry");
        return a;
    };
    let charter = match serde_json::from_str::<Charter>(charter) {
        Ok(c) if c.canonical_bytes() == charter.as_bytes() => c,
        _ => {
            a.find(
                Some(0),
                None,
                "the genesis charter is not a canonical charter",
            );
            return a;
        }
    };
    if let Err(e) = charter.validate() {
        // Not fatal: the entries are still checked under the charter as recorded.
        a.find(
            Some(0),
            None,
            format!("the genesis charter is not valid: {e}"),
        );
    }
    let federation = federation_id.clone();
    a.genesis = Some((federation.clone(), config_sha256.clone()));
    let key = match (trusted_key, key_of(coordinator_key)) {
        (Some(trusted), Some(recorded)) if *trusted != recorded => {
            a.find(
                Some(0),
                None,
                format!(
                    "the genesis names coordinator key {coordinator_key}, not the trusted {trusted}"
                ),
            );
            *trusted
        }
        (Some(trusted), _) => *trusted,
        (None, Some(recorded)) => recorded,
        (None, None) => {
            a.find(
                Some(0),
                None,
                "the genesis entry's coordinator key is not an ed25519 key",
            );
            return a;
        }
    };
    a.coordinator_key = Some(key.to_string());
    check_heads(&mut a, &ledger, heads, &key);
    check_entries(&mut a, &parsed, &federation, charter);
    a
}

/// Every head signed by the coordinator, growing, and matching the entries it covers.
fn check_heads(a: &mut Audit, ledger: &Ledger, heads: &[TreeHead], key: &PublicKey) {
    let mut last_size = 0;
    for head in heads {
        if head.verify(key).is_err() {
            a.find(
                None,
                None,
                format!(
                    "tree head of size {}: the signature does not verify",
                    head.size
                ),
            );
            continue;
        }
        if head.size < last_size {
            a.find(
                None,
                None,
                format!(
                    "tree head of size {} follows one of size {last_size}: the log shrank",
                    head.size
                ),
            );
        }
        last_size = head.size;
        if head.size > ledger.len() {
            a.find(None, None, format!("tree head of size {} covers more entries than the {} stored: entries were dropped", head.size, ledger.len()));
        } else if ledger.root_at(head.size) != head.root {
            a.find(None, None, format!("tree head of size {}: its root does not match the stored entries (an entry was altered, dropped or inserted)", head.size));
        } else {
            a.head = Some(head.clone());
        }
    }
    match heads.last() {
        None => a.find(None, None, "no signed tree head"),
        Some(h) if h.size < ledger.len() => a.find(
            Some(h.size),
            None,
            format!(
                "{} entries after the last signed tree head",
                ledger.len() - h.size
            ),
        ),
        _ => {}
    }
}

/// The entries' own rules, round by round.
fn check_entries(a: &mut Audit, parsed: &[Option<Entry>], federation: &str, mut charter: Charter) {
    let mut keys: BTreeMap<u64, String> = BTreeMap::new();
    let mut opened: BTreeMap<(u64, u32), (BTreeSet<u64>, String)> = BTreeMap::new();
    let mut committed: BTreeMap<u64, Vec<(u64, String, u64)>> = BTreeMap::new();
    let mut last_output: Option<String> = None;
    let mut last_epsilon = 0.0f64;
    let mut buffered = BufferedHistory::default();
    let mut committed_data: BTreeSet<u64> = BTreeSet::new();
    let mut removed_for_fraud: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, entry) in parsed.iter().enumerate().skip(1) {
        let at = Some(i as u64);
        let Some(entry) = entry else { continue };
        match entry {
            Entry::Genesis { .. } => a.find(at, None, "a second genesis entry"),
            Entry::Amendment {
                amends,
                charter: proposed,
                signatures,
            } => {
                let amendment = serde_json::from_str::<Charter>(proposed).map(|c| Amendment {
                    amends: amends.clone(),
                    charter: c,
                    signatures: signatures.clone(),
                });
                match amendment
                    .map_err(|e| e.to_string())
                    // The genesis names the federation; a steward's signature for another
                    // federation's identical charter must not count here.
                    .and_then(|am| charter.apply(federation, &am).map_err(|e| e.to_string()))
                {
                    Ok(next) => {
                        a.amendments += 1;
                        charter = next;
                    }
                    Err(e) => a.find(
                        at,
                        None,
                        format!("an amendment that does not take effect: {e}"),
                    ),
                }
            }
            Entry::Enrolment {
                participant,
                public_key,
                ..
            } => {
                if !charter.may_train(public_key) {
                    a.find(at, None, format!("participant {participant} enrolled, but the charter does not admit its key"));
                }
                if key_of(public_key).is_none() {
                    a.find(
                        at,
                        None,
                        format!("participant {participant}'s key is not an ed25519 key"),
                    );
                }
                if keys.insert(*participant, public_key.clone()).is_some() {
                    a.find(
                        at,
                        None,
                        format!("participant {participant} enrolled twice"),
                    );
                }
            }
            Entry::DataCommitment {
                participant,
                data_root,
            } => {
                if !keys.contains_key(participant) {
                    a.find(
                        at,
                        None,
                        format!("participant {participant} committed to data before it enrolled"),
                    );
                }
                if Digest::from_hex(data_root).is_none() {
                    a.find(
                        at,
                        None,
                        format!(
                            "participant {participant}'s data root is not a 32-byte hex digest"
                        ),
                    );
                }
                if !committed_data.insert(*participant) {
                    a.find(
                        at,
                        None,
                        format!("participant {participant} committed to data twice"),
                    );
                }
            }
            Entry::RoundOpen {
                round,
                attempt,
                selected,
                base,
                local_steps,
                ..
            } => {
                if charter.mode == Mode::Community && *local_steps == 0 {
                    a.find(
                        at,
                        Some(*round),
                        format!("round {round} runs under a community charter but asks for no inner steps (local_steps)"),
                    );
                }
                if let Some(out) = &last_output
                    && out != base
                {
                    a.find(at, Some(*round), format!("round {round} starts from {base}, not from the previous round's result {out}"));
                }
                if let Some(p) = selected.iter().find(|p| !keys.contains_key(p)) {
                    a.find(
                        at,
                        Some(*round),
                        format!("round {round} selects participant {p}, who never enrolled"),
                    );
                }
                opened.insert(
                    (*round, *attempt),
                    (selected.iter().copied().collect(), base.clone()),
                );
            }
            Entry::UpdateCommitment {
                round,
                attempt,
                participant,
                update_digest,
                num_samples,
                signature,
                recipe,
            } => {
                let r = Some(*round);
                if let Some(fraud_round) = removed_for_fraud.get(participant) {
                    a.find(at, r, format!("round {round}: participant {participant} was removed for fraud in round {fraud_round}, yet an update of its is recorded"));
                }
                let Some((selected, base)) = opened.get(&(*round, *attempt)) else {
                    a.find(
                        at,
                        r,
                        format!(
                            "round {round}: an update for attempt {attempt}, which never opened"
                        ),
                    );
                    continue;
                };
                if !selected.contains(participant) {
                    a.find(
                        at,
                        r,
                        format!("round {round}: participant {participant} was not selected"),
                    );
                }
                check_recipe(
                    a,
                    at,
                    &charter,
                    *round,
                    *participant,
                    selected,
                    recipe.as_ref(),
                );
                let signed = statement(
                    federation,
                    *round,
                    (base, update_digest),
                    *num_samples,
                    *recipe,
                );
                let verified = verify_signed(signed, keys.get(participant), signature);
                if let Some(max) = charter.max_samples
                    && *num_samples > max
                {
                    a.find(at, r, format!("round {round}: participant {participant} claims {num_samples} samples, beyond the charter's max_samples of {max}"));
                }
                if verified {
                    a.signatures_verified += 1;
                } else {
                    a.find(at, r, format!("round {round}: participant {participant}'s signature does not verify for this update"));
                }
                committed.entry(*round).or_default().push((
                    *participant,
                    update_digest.clone(),
                    *num_samples,
                ));
            }
            Entry::Fraud {
                round,
                participant,
                base,
                recipe,
                claimed,
                replayed,
                num_samples,
                signature,
                ..
            } => {
                let r = Some(*round);
                if charter.verification.is_none() {
                    a.find(
                        at,
                        r,
                        format!(
                            "round {round}: a fraud entry, but the charter sets no verification"
                        ),
                    );
                }
                if last_output.as_ref().is_some_and(|out| out != base) {
                    a.find(at, r, format!("round {round}: the fraud entry's base {base} is not the previous round's result"));
                }
                if claimed == replayed {
                    a.find(at, r, format!("round {round}: participant {participant} is accused of fraud, but its update is the replay"));
                }
                let signed = statement(
                    federation,
                    *round,
                    (base, claimed),
                    *num_samples,
                    Some(*recipe),
                );
                if verify_signed(signed, keys.get(participant), signature) {
                    a.signatures_verified += 1;
                } else {
                    a.find(at, r, format!("round {round}: the fraud entry's evidence is not participant {participant}'s signature"));
                }
                removed_for_fraud.insert(*participant, *round);
                a.frauds.push((*round, *participant));
            }
            Entry::RoundResult {
                round,
                strategy,
                inputs,
                output,
                epsilon,
            } => {
                let r = Some(*round);
                if let Some(budget) = charter.privacy {
                    match epsilon {
                        Some(e) if *e <= budget.epsilon * (1.0 + 1e-9) && *e >= last_epsilon => last_epsilon = *e,
                        Some(e) => a.find(at, r, format!("round {round} spends ε = {e}, beyond the charter's budget of {} or less than before", budget.epsilon)),
                        None => a.find(at, r, format!("round {round} records no ε, but the charter sets a privacy budget")),
                    }
                }
                if !charter.allows_strategy(strategy) {
                    a.find(at, r, format!("round {round} used strategy {strategy}, which the charter does not allow"));
                }
                if *round > charter.max_rounds {
                    a.find(
                        at,
                        r,
                        format!(
                            "round {round} is beyond the charter's {} rounds",
                            charter.max_rounds
                        ),
                    );
                }
                if inputs.len() < charter.min_quorum {
                    a.find(
                        at,
                        r,
                        format!(
                            "round {round} combined {} updates, below the charter's quorum of {}",
                            inputs.len(),
                            charter.min_quorum
                        ),
                    );
                }
                let mut commitments = committed.remove(round).unwrap_or_default();
                commitments.sort_by_key(|c| c.0);
                let digests: Vec<&String> = commitments.iter().map(|c| &c.1).collect();
                if digests != inputs.iter().collect::<Vec<_>>() {
                    a.find(
                        at,
                        r,
                        format!("round {round}: the result's inputs are not the committed updates"),
                    );
                }
                let base = opened
                    .iter()
                    .rev()
                    .find(|((rr, _), _)| rr == round)
                    .map(|(_, (_, b))| b.clone())
                    .unwrap_or_default();
                if base.is_empty() {
                    a.find(
                        at,
                        r,
                        format!("round {round}: a result for a round that never opened"),
                    );
                }
                a.rounds.push(AuditedRound {
                    round: *round,
                    strategy: strategy.clone(),
                    base,
                    inputs: commitments,
                    output: output.clone(),
                });
                last_output = Some(output.clone());
            }
            Entry::BufferedStep {
                version,
                base,
                inputs,
                output,
                epsilon,
            } => {
                if let Some(budget) = charter.privacy {
                    let v = *version;
                    match epsilon {
                        Some(e) if *e <= budget.epsilon * (1.0 + 1e-9) && *e >= last_epsilon => last_epsilon = *e,
                        Some(e) => a.find(at, Some(v), format!("version {v} spends ε = {e}, beyond the charter's budget of {} or less than before", budget.epsilon)),
                        None => a.find(at, Some(v), format!("version {v} records no ε, but the charter sets a privacy budget")),
                    }
                }
                let step = Step {
                    at,
                    version: *version,
                    base,
                    inputs,
                    output,
                };
                check_step(a, &step, &keys, &mut buffered, federation, &charter);
                last_output = Some(output.clone());
            }
            Entry::Release {
                model_digest,
                rounds,
            } => {
                if last_output.as_ref() != Some(model_digest) {
                    a.find(
                        at,
                        Some(*rounds),
                        "the released model is not the last round's result",
                    );
                }
            }
        }
    }
}

/// What the buffered steps so far recorded.
#[derive(Default)]
struct BufferedHistory {
    /// The versions' digests, from version 0 (the first step's base).
    versions: Vec<String>,
    /// Each result applied: participant, base version, piece of work.
    applied: BTreeSet<(u64, u64, u32)>,
}

/// A buffered step's entry, where it is.
struct Step<'a> {
    at: Option<u64>,
    version: u64,
    base: &'a str,
    inputs: &'a [crate::BufferedInput],
    output: &'a str,
}

/// A buffered step's own rules: the charter's buffered rule in force, versions in order and
/// chained, every input enrolled, signed over the version it trained from, as stale as its
/// versions say and no staler than the charter allows, and as many inputs as the buffer.
fn check_step(
    a: &mut Audit,
    step: &Step<'_>,
    keys: &BTreeMap<u64, String>,
    history: &mut BufferedHistory,
    federation: &str,
    charter: &Charter,
) {
    let (at, v) = (step.at, step.version);
    let r = Some(v);
    let Some(rule) = charter.buffered else {
        a.find(
            at,
            r,
            format!("version {v} is a buffered step, but the charter sets synchronous rounds"),
        );
        return;
    };
    let versions = &mut history.versions;
    if versions.is_empty() {
        versions.push(step.base.to_string());
    }
    if v as usize != versions.len() {
        a.find(
            at,
            r,
            format!("version {v} follows version {}", versions.len() - 1),
        );
    }
    if versions.last().map(String::as_str) != Some(step.base) {
        a.find(
            at,
            r,
            format!(
                "version {v} starts from {}, not from the previous version",
                step.base
            ),
        );
    }
    if v > charter.max_rounds {
        a.find(
            at,
            r,
            format!(
                "version {v} is beyond the charter's {} rounds",
                charter.max_rounds
            ),
        );
    }
    if step.inputs.len() != rule.buffer {
        a.find(
            at,
            r,
            format!(
                "version {v} applies {} results, but the charter's buffer is {}",
                step.inputs.len(),
                rule.buffer
            ),
        );
    }
    for input in step.inputs {
        let p = input.participant;
        if !keys.contains_key(&p) {
            a.find(
                at,
                r,
                format!("version {v}: participant {p} never enrolled"),
            );
            continue;
        }
        if input.base_version >= v || input.staleness != v - 1 - input.base_version {
            a.find(at, r, format!("version {v}: participant {p}'s staleness {} does not follow from its base version {}", input.staleness, input.base_version));
            continue;
        }
        if !history
            .applied
            .insert((p, input.base_version, input.attempt))
        {
            a.find(at, r, format!("version {v}: participant {p}'s result for piece {} of version {} was applied before", input.attempt, input.base_version));
        }
        if input.staleness > rule.max_staleness {
            a.find(at, r, format!("version {v}: participant {p}'s result is {} versions stale, beyond the charter's {}", input.staleness, rule.max_staleness));
        }
        if let Some(max) = charter.max_samples
            && input.num_samples > max
        {
            a.find(at, r, format!("version {v}: participant {p} claims {} samples, beyond the charter's max_samples of {max}", input.num_samples));
        }
        let signed = versions.get(input.base_version as usize).and_then(|base| {
            statement(
                federation,
                input.base_version + 1,
                (base, &input.update_digest),
                input.num_samples,
                None,
            )
        });
        if verify_signed(signed, keys.get(&p), &input.signature) {
            a.signatures_verified += 1;
        } else {
            a.find(at, r, format!("version {v}: participant {p}'s signature does not verify for this update and base version"));
        }
    }
    versions.push(step.output.to_string());
    a.steps.push(AuditedStep {
        version: v,
        base: step.base.to_string(),
        inputs: step
            .inputs
            .iter()
            .map(|i| {
                (
                    i.participant,
                    i.base_version,
                    i.staleness,
                    i.update_digest.clone(),
                )
            })
            .collect(),
        output: step.output.to_string(),
    });
}
