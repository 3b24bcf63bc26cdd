//! `harambee keygen`.

use anyhow::{Result, bail};
use harambee_identity::Identity;

use crate::cli::KeygenArgs;

pub(crate) fn run(args: KeygenArgs) -> Result<()> {
    match (args.out, args.show) {
        (Some(path), None) => {
            let identity = Identity::generate()?;
            identity.save(&path)?;
            eprintln!(
                "wrote a new ed25519 key to {} (readable only by you; keep it secret)",
                path.display()
            );
            println!("{}", identity.public());
        }
        (None, Some(path)) => println!("{}", Identity::load(&path)?.public()),
        _ => bail!("say where to write a new key (--out FILE) or which key to show (--show FILE)"),
    }
    Ok(())
}
