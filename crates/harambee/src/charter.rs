//! `harambee charter sign|amend`: changing a federation's rules, which takes k of n stewards.

use anyhow::{Context, Result, bail};
use harambee_charter::{Amendment, Charter, FolderLock};
use harambee_identity::Identity;
use harambee_ledger::{Entry, Ledger};
use harambee_proto::Invite;
use harambee_server::FederationFolder;
use harambee_store::{HeadRecord, SqliteState, StateStore};
use sha2::{Digest as _, Sha256};

use crate::cli::{CharterArgs, CharterCommand};

pub(crate) fn run(args: CharterArgs) -> Result<()> {
    match args.command {
        CharterCommand::Sign { dir, proposed, key } => {
            let folder = FederationFolder::new(&dir);
            let current = folder.charter()?;
            // The signature names the federation, so it cannot be replayed in another one
            // that happens to run the same charter.
            let federation = folder.config()?.federation_id;
            let proposed = read(&proposed)?;
            let steward = Identity::load(&key)?;
            println!(
                "{}={}",
                steward.public(),
                Amendment::sign(&steward, &federation, &current, &proposed)
            );
            eprintln!(
                "signed the replacement of charter {} by {} in federation {federation}; give this line to whoever applies the amendment",
                current.hash(),
                proposed.hash()
            );
            Ok(())
        }
        CharterCommand::Amend {
            dir,
            proposed,
            signature,
        } => amend(&dir, &proposed, &signature),
    }
}

fn read(path: &std::path::Path) -> Result<Charter> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Charter::parse(&text)?)
}

/// Applies an amendment signed by enough stewards: records it in the ledger (with a signed
/// tree head), then replaces charter.toml and the invite's charter hash. It holds the
/// folder's [`FolderLock`] throughout, so it refuses to run beside a live coordinator (which
/// holds the same lock) or another amendment; the new rules hold from the next start.
fn amend(dir: &std::path::Path, proposed: &std::path::Path, signatures: &[String]) -> Result<()> {
    let folder = FederationFolder::new(dir);
    // Read first, so a folder that holds no federation is named as such, not as a lock error.
    let config = folder.config()?;
    // Held until the files are written: no coordinator starts, and none is running, meanwhile.
    let _held = FolderLock::acquire(dir, "`harambee charter amend`")?;
    let current = folder.charter()?;
    let proposed = read(proposed)?;
    let signatures = signatures
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| {
                    format!(
                        "{s:?}: expected PUBLIC_KEY=SIGNATURE, as `harambee charter sign` prints"
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let key = Identity::load(&dir.join("coordinator.key"))?;
    let state = SqliteState::open(&folder.state_path())?;
    let (entries, _) = state.ledger()?;
    let Some(recorded) = Recorded::from_entries(&entries) else {
        bail!(
            "the federation has no ledger yet: start it once with `harambee serve`, or edit charter.toml before the first start"
        );
    };
    if recorded.federation != config.federation_id {
        bail!(
            "federation.toml names federation {}, but the ledger's genesis names {}: this folder's settings do not belong to its ledger",
            config.federation_id,
            recorded.federation
        );
    }
    if recorded.in_force == proposed.hash() && recorded.in_force != current.hash() {
        // An earlier run recorded this amendment, then stopped before rewriting the files.
        write_files(&folder, &proposed)?;
        println!(
            "charter amended: {} -> {} (the ledger already recorded it; charter.toml and the invite now follow)",
            current.hash(),
            proposed.hash()
        );
        return Ok(());
    }
    if recorded.in_force != current.hash() {
        bail!(
            "charter.toml (hash {}) is not the charter the ledger records ({}): restore it before amending",
            current.hash(),
            recorded.in_force
        );
    }
    let amendment = Amendment {
        amends: current.hash(),
        charter: proposed,
        signatures,
    };
    let next = current.apply(&recorded.federation, &amendment)?;
    next.check(
        &config.training.strategy.to_string(),
        config.rounds.quorum,
        config.rounds.deadline_s,
        config.rounds.rounds,
    )
    .context("the amended charter would forbid the federation's current settings")?;

    let mut ledger = Ledger::from_entries(entries);
    let entry = Entry::Amendment {
        amends: amendment.amends.clone(),
        charter: String::from_utf8_lossy(&next.canonical_bytes()).into_owned(),
        signatures: amendment.signatures.clone(),
    };
    ledger.append(&entry);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let head = ledger.sign_head(&key, now);
    state.append_ledger(
        &[entry.to_bytes()],
        &HeadRecord {
            size: head.size,
            root: head.root,
            timestamp_ms: head.timestamp_ms,
            signature: head.signature,
        },
    )?;
    write_files(&folder, &next)?;
    println!(
        "charter amended: {} -> {} (recorded in the ledger; participants need the new invite)",
        current.hash(),
        next.hash()
    );
    Ok(())
}

/// Puts the charter in force into the folder's files: `charter.toml`, replaced in one step,
/// and the invite's charter hash.
fn write_files(folder: &FederationFolder, charter: &Charter) -> Result<()> {
    charter.save(&folder.charter_path())?;
    let mut invite = Invite::load(&folder.invite_path())?;
    invite.charter_sha256 = charter.hash();
    invite.save(&folder.invite_path())?;
    Ok(())
}

/// What the ledger says about the charter.
struct Recorded {
    /// The federation's id, from the genesis entry.
    federation: String,
    /// The hash of the charter in force: the genesis charter, as amended.
    in_force: String,
}

impl Recorded {
    /// `None` when there is no genesis entry.
    fn from_entries(entries: &[Vec<u8>]) -> Option<Self> {
        let mut recorded: Option<Self> = None;
        for entry in entries {
            match (Entry::parse(entry), &mut recorded) {
                (
                    Ok(Entry::Genesis {
                        federation_id,
                        charter,
                        ..
                    }),
                    None,
                ) => {
                    recorded = Some(Self {
                        federation: federation_id,
                        in_force: hex::encode(Sha256::digest(charter.as_bytes())),
                    });
                }
                (Ok(Entry::Amendment { charter, .. }), Some(r)) => {
                    r.in_force = hex::encode(Sha256::digest(charter.as_bytes()));
                }
                _ => {}
            }
        }
        recorded
    }
}
