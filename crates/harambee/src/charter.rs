//! `harambee charter sign|amend`: changing a federation's rules, which takes k of n stewards.

use anyhow::{Context, Result, bail};
use harambee_charter::{Amendment, Charter};
use harambee_identity::Identity;
use harambee_ledger::{Entry, Ledger};
use harambee_proto::Invite;
use harambee_server::FederationFolder;
use harambee_store::{HeadRecord, SqliteState, StateStore};

use crate::cli::{CharterArgs, CharterCommand};

pub(crate) fn run(args: CharterArgs) -> Result<()> {
    match args.command {
        CharterCommand::Sign { dir, proposed, key } => {
            let current = FederationFolder::new(&dir).charter()?;
            let proposed = read(&proposed)?;
            let steward = Identity::load(&key)?;
            println!(
                "{}={}",
                steward.public(),
                Amendment::sign(&steward, &current, &proposed)
            );
            eprintln!(
                "signed the replacement of charter {} by {}; give this line to whoever applies the amendment",
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
/// tree head), then replaces charter.toml and the invite's charter hash. Run it while the
/// coordinator is stopped; the new rules hold from its next start.
fn amend(dir: &std::path::Path, proposed: &std::path::Path, signatures: &[String]) -> Result<()> {
    let folder = FederationFolder::new(dir);
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
    let amendment = Amendment {
        amends: current.hash(),
        charter: proposed,
        signatures,
    };
    let next = current.apply(&amendment)?;
    let config = folder.config()?;
    next.check(
        &config.training.strategy.to_string(),
        config.rounds.quorum,
        config.rounds.deadline_s,
        config.rounds.rounds,
    )
    .context("the amended charter would forbid the federation's current settings")?;

    let key = Identity::load(&dir.join("coordinator.key"))?;
    let state = SqliteState::open(&folder.state_path())?;
    let (entries, _) = state.ledger()?;
    if entries.is_empty() {
        bail!(
            "the federation has no ledger yet: start it once with `harambee serve`, or edit charter.toml before the first start"
        );
    }
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
    std::fs::write(folder.charter_path(), toml::to_string_pretty(&next)?)?;
    let mut invite = Invite::load(&folder.invite_path())?;
    invite.charter_sha256 = next.hash();
    invite.save(&folder.invite_path())?;
    println!(
        "charter amended: {} -> {} (recorded in the ledger; participants need the new invite)",
        current.hash(),
        next.hash()
    );
    Ok(())
}
