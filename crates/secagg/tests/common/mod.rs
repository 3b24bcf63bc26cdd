//! The protocol's first two steps for every participant, in memory: what the tests and the
//! benchmark need before masking.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use harambee_secagg::{Client, Config, SealedShare, Server};
use rand_chacha::ChaCha20Rng;

/// The sealed shares addressed to each participant, by id.
pub(crate) type Inboxes = BTreeMap<u32, Vec<SealedShare>>;

/// All `config.participants` clients advertise their keys and share them through a fresh
/// server: the clients, the server and each client's inbox, ready for step 3.
pub(crate) fn keys_and_shares(
    config: &Config,
    rng: &mut ChaCha20Rng,
) -> (Vec<Client>, Server, Inboxes) {
    let mut clients: Vec<Client> = (0..config.participants)
        .map(|i| Client::new(config.clone(), i, rng).unwrap())
        .collect();
    let mut server = Server::new(config.clone()).unwrap();
    for c in &mut clients {
        server.receive_keys(c.advertise().unwrap()).unwrap();
    }
    let rosters = server.close_keys().unwrap();
    for c in &mut clients {
        let sealed = c.share_keys(&rosters[&c.id()], rng).unwrap();
        server.receive_shares(c.id(), sealed).unwrap();
    }
    let inboxes = server.close_shares().unwrap();
    (clients, server, inboxes)
}
