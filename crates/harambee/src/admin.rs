//! `harambee admin pause|resume|remove`: a steward's signed change to a running federation,
//! sent to its dashboard.

use anyhow::{Context, Result, bail};
use harambee_dashboard::DashboardClient;
use harambee_dashboard::api::{AdminReply, PauseRequest, RemoveRequest};
use harambee_identity::Identity;

use crate::cli::{AdminArgs, AdminCommand};

pub(crate) fn run(args: AdminArgs) -> Result<()> {
    let (Some(url), Some(key)) = (&args.url, &args.key) else {
        bail!(
            "say which dashboard (--url http://HOST:PORT, as `harambee serve` printed it) and which steward key signs (--key FILE)"
        );
    };
    let steward = Identity::load(key).with_context(|| format!("loading {}", key.display()))?;
    let (path, body) = match args.command {
        AdminCommand::Pause => (
            "/api/admin/pause",
            serde_json::to_vec(&PauseRequest {
                reason: args.reason.clone(),
            })?,
        ),
        AdminCommand::Resume => (
            "/api/admin/resume",
            serde_json::to_vec(&PauseRequest {
                reason: args.reason.clone(),
            })?,
        ),
        AdminCommand::Remove { participant } => (
            "/api/admin/remove",
            serde_json::to_vec(&RemoveRequest {
                participant,
                reason: args.reason.clone(),
            })?,
        ),
    };
    let client = DashboardClient::new(url)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let reply = runtime.block_on(client.steward_post(&steward, path, body))?;
    if reply.status != 200 {
        bail!(
            "the coordinator refused ({}): {}",
            reply.status,
            reply.error()
        );
    }
    let done: AdminReply = reply.json()?;
    println!(
        "{}: done; the federation is {}{}",
        done.applied,
        if done.paused { "paused" } else { "running" },
        if done.removed.is_empty() {
            String::new()
        } else {
            format!(
                "; removed participants: {}",
                done.removed
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(())
}
