use std::path::Path;
use std::sync::Mutex;

use harambee_params::Digest;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StoreError;

/// What redeeming a single-use invite found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// No invite has that token.
    Unknown,
    /// The invite is (now, or already was) this key's.
    Redeemed,
    /// Another key used it first.
    UsedByAnother,
}

/// An enrolled participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRecord {
    /// Its number in the federation (from 0, in order of enrolment).
    pub id: u64,
    /// Its ed25519 public key.
    pub public_key: [u8; 32],
    /// Its display name.
    pub name: String,
}

/// An acknowledged update: everything needed to feed it to the core again after a restart,
/// and to prove later who vouched for what.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRecord {
    /// The round.
    pub round: u64,
    /// The attempt at the round.
    pub attempt: u32,
    /// Who sent it.
    pub participant: u64,
    /// Canonical digest of the parameters (what was signed).
    pub update_digest: Digest,
    /// The blob holding the f32 encoding of the parameters.
    pub blob: Digest,
    /// Training examples claimed.
    pub num_samples: u64,
    /// Mean training loss reported.
    pub train_loss: f32,
    /// The participant's signature over the update statement.
    pub signature: Vec<u8>,
}

/// The round that was open when the state was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRoundRecord {
    /// The round.
    pub round: u64,
    /// The attempt.
    pub attempt: u32,
    /// The selected participants.
    pub selected: Vec<u64>,
    /// Digest of the parameters it started from.
    pub base: Digest,
}

/// A completed round, as the status display and the ledger need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedRoundRecord {
    /// The round.
    pub round: u64,
    /// Canonical digest of the parameters after the round.
    pub global_digest: Digest,
    /// Blob of those parameters (f32 encoding).
    pub global_blob: Digest,
    /// Updates combined.
    pub contributors: u32,
    /// Sample-weighted mean training loss of the contributors.
    pub train_loss: f64,
    /// What the core reported (JSON), for inspection.
    pub summary: String,
}

/// A signed tree head of the ledger, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadRecord {
    /// Entries covered.
    pub size: u64,
    /// Their Merkle root.
    pub root: [u8; 32],
    /// When it was signed (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// The coordinator's signature.
    pub signature: Vec<u8>,
}

/// A steward's signed request to change the federation, once its signature has been checked:
/// kept whether or not it took effect, so that its nonce is never accepted again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StewardActionRecord {
    /// The request's nonce (hex): unique, which is what refuses a replay.
    pub nonce: String,
    /// The steward's public key (hex).
    pub steward: String,
    /// When the steward signed it (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// `pause`, `resume` or `remove`.
    pub action: String,
    /// The participant concerned (for `remove`).
    pub participant: Option<u64>,
    /// Whether it took effect.
    pub applied: bool,
    /// Why it did not, when it did not.
    pub refusal: String,
}

/// What the participants' reports say about one round's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundEvaluation {
    /// The round whose result was evaluated.
    pub round: u64,
    /// Mean accuracy, weighted by the examples each participant evaluated.
    pub accuracy: f64,
    /// Mean loss, weighted the same way (none where only older reports without one exist).
    pub loss: Option<f64>,
}

/// Where a restarted coordinator picks up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    /// Rounds completed.
    pub completed: u64,
    /// Blob of the current global parameters (none before the first round's result).
    pub global_blob: Option<Digest>,
    /// The open round, if one was open.
    pub open: Option<OpenRoundRecord>,
    /// The strategy's state between rounds (name, blob), e.g. server optimiser moments.
    pub strategy_state: Vec<(String, Digest)>,
}

/// The coordinator's durable state: who is enrolled, which round is open with which updates,
/// what each round produced. Every method returns only once its change is durable.
pub trait StateStore: Send + Sync {
    /// Enrols a key (or finds it); returns its record and whether it is new.
    fn enrol(
        &self,
        public_key: &[u8; 32],
        name: &str,
    ) -> Result<(ParticipantRecord, bool), StoreError>;
    /// Every enrolled participant, by id.
    fn participants(&self) -> Result<Vec<ParticipantRecord>, StoreError>;
    /// Records a single-use invite, by its token's SHA-256 (hex), issued to `name`.
    fn issue_invite(
        &self,
        token_sha256: &str,
        name: &str,
        issued_ms: u64,
    ) -> Result<(), StoreError>;
    /// Redeems an invite for a key, in one transaction: an unused invite becomes that key's;
    /// one already that key's stays so (a participant enrolling again).
    fn redeem_invite(
        &self,
        token_sha256: &str,
        public_key: &[u8; 32],
    ) -> Result<Redemption, StoreError>;
    /// Records that a round (attempt) opened; replaces an earlier attempt's record.
    fn open_round(&self, open: &OpenRoundRecord) -> Result<(), StoreError>;
    /// Records an acknowledged update. Refuses a second update by the same participant for
    /// the same round and attempt.
    fn record_update(&self, update: &UpdateRecord) -> Result<(), StoreError>;
    /// The acknowledged updates of a round's attempt, by participant.
    fn updates(&self, round: u64, attempt: u32) -> Result<Vec<UpdateRecord>, StoreError>;
    /// Every acknowledged update of a round, all attempts.
    fn updates_of_round(&self, round: u64) -> Result<Vec<UpdateRecord>, StoreError>;
    /// Whether anything still kept refers to a blob: an update of a round after `expired`, a
    /// round's global parameters, or the strategy's state. Blobs are content-addressed, so one
    /// blob can stand for several things (an update that returns its base unchanged is the
    /// previous round's global model): retention deletes one only when nothing refers to it.
    fn blob_in_use(&self, blob: &Digest, expired: u64) -> Result<bool, StoreError>;
    /// Records a completed round, the new global parameters and the strategy's state, in one
    /// transaction.
    fn close_round(
        &self,
        closed: &ClosedRoundRecord,
        strategy_state: &[(String, Digest)],
        ledger: &[Vec<u8>],
        head: &HeadRecord,
    ) -> Result<(), StoreError>;
    /// Appends ledger entries and the tree head that covers them, in one transaction.
    fn append_ledger(&self, entries: &[Vec<u8>], head: &HeadRecord) -> Result<(), StoreError>;
    /// The ledger's entries in order, and its signed tree heads by size.
    fn ledger(&self) -> Result<(Vec<Vec<u8>>, Vec<HeadRecord>), StoreError>;
    /// Records that the federation is over (`error` when it failed).
    fn finish(&self, error: Option<&str>) -> Result<(), StoreError>;
    /// Whether (and how) the federation ended: `Some(None)` finished, `Some(Some(e))` failed.
    fn finished(&self) -> Result<Option<Option<String>>, StoreError>;
    /// Completed rounds, oldest first.
    fn closed_rounds(&self) -> Result<Vec<ClosedRoundRecord>, StoreError>;
    /// Where to resume.
    fn checkpoint(&self) -> Result<Checkpoint, StoreError>;
    /// Records a participant's evaluation of a round's result (the latest report wins).
    fn record_evaluation(
        &self,
        round: u64,
        participant: u64,
        examples: u64,
        accuracy: f64,
        loss: f64,
    ) -> Result<(), StoreError>;
    /// Every evaluated round's example-weighted mean accuracy and loss, by round.
    fn round_evaluations(&self) -> Result<Vec<RoundEvaluation>, StoreError>;
    /// Records a steward's request; `false` (and nothing stored) when its nonce was used
    /// before: a replay.
    fn record_steward_action(&self, action: &StewardActionRecord) -> Result<bool, StoreError>;
    /// Every recorded steward request, oldest first.
    fn steward_actions(&self) -> Result<Vec<StewardActionRecord>, StoreError>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY, public_key BLOB NOT NULL UNIQUE, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS open_round (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    round INTEGER NOT NULL, attempt INTEGER NOT NULL, selected TEXT NOT NULL, base BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS updates (
    round INTEGER NOT NULL, attempt INTEGER NOT NULL, participant INTEGER NOT NULL,
    update_digest BLOB NOT NULL, blob BLOB NOT NULL, num_samples INTEGER NOT NULL,
    train_loss REAL NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY (round, attempt, participant));
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, global_digest BLOB NOT NULL, global_blob BLOB NOT NULL,
    contributors INTEGER NOT NULL, train_loss REAL NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS strategy_state (name TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    round INTEGER NOT NULL, participant INTEGER NOT NULL, examples INTEGER NOT NULL,
    accuracy REAL NOT NULL, loss REAL, PRIMARY KEY (round, participant));
CREATE TABLE IF NOT EXISTS invites (
    token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, issued_ms INTEGER NOT NULL,
    used_by BLOB);
CREATE TABLE IF NOT EXISTS steward_actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, nonce TEXT NOT NULL UNIQUE, steward TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL, action TEXT NOT NULL, participant INTEGER,
    applied INTEGER NOT NULL, refusal TEXT NOT NULL);
";

/// [`StateStore`] in an embedded SQLite database (WAL journal, `synchronous = FULL`, so a
/// committed change survives power loss, not only a crash of the process).
pub struct SqliteState {
    conn: Mutex<Connection>,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteState")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteState {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = |e| sql(path, e);
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        add_evaluation_loss(&conn).map_err(db)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave a half-done transaction (SQLite rolls it
        // back), so a poisoned lock is safe to take over.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| sql(&self.path, e))
    }
}

/// Databases made before evaluations carried a loss gain the column (empty for old rows).
fn add_evaluation_loss(conn: &Connection) -> rusqlite::Result<()> {
    let has_loss = conn
        .prepare("SELECT 1 FROM pragma_table_info('evaluations') WHERE name = 'loss'")?
        .exists([])?;
    if !has_loss {
        conn.execute_batch("ALTER TABLE evaluations ADD COLUMN loss REAL")?;
    }
    Ok(())
}

fn sql(path: &Path, error: rusqlite::Error) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

fn digest_from(bytes: Vec<u8>) -> rusqlite::Result<Digest> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(Digest)
        .map_err(|_| {
            rusqlite::Error::InvalidColumnType(0, "digest".into(), rusqlite::types::Type::Blob)
        })
}

fn id_list(text: &str) -> rusqlite::Result<Vec<u64>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    "selected".into(),
                    rusqlite::types::Type::Text,
                )
            })
        })
        .collect()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn read_update(row: &rusqlite::Row<'_>) -> rusqlite::Result<UpdateRecord> {
    Ok(UpdateRecord {
        round: row.get::<_, i64>(0)? as u64,
        attempt: row.get::<_, i64>(1)? as u32,
        participant: row.get::<_, i64>(2)? as u64,
        update_digest: digest_from(row.get(3)?)?,
        blob: digest_from(row.get(4)?)?,
        num_samples: row.get::<_, i64>(5)? as u64,
        train_loss: row.get::<_, f64>(6)? as f32,
        signature: row.get(7)?,
    })
}

impl StateStore for SqliteState {
    fn enrol(
        &self,
        public_key: &[u8; 32],
        name: &str,
    ) -> Result<(ParticipantRecord, bool), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let found: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, name FROM participants WHERE public_key = ?1",
                    [&public_key[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (id, name, new) = match found {
                Some((id, name)) => (id, name, false),
                None => {
                    let id: i64 =
                        tx.query_row("SELECT COUNT(*) FROM participants", [], |r| r.get(0))?;
                    tx.execute(
                        "INSERT INTO participants (id, public_key, name) VALUES (?1, ?2, ?3)",
                        params![id, &public_key[..], name],
                    )?;
                    (id, name.to_string(), true)
                }
            };
            tx.commit()?;
            Ok((
                ParticipantRecord {
                    id: id as u64,
                    public_key: *public_key,
                    name,
                },
                new,
            ))
        })
    }

    fn issue_invite(
        &self,
        token_sha256: &str,
        name: &str,
        issued_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO invites (token_sha256, name, issued_ms) VALUES (?1, ?2, ?3)",
                params![token_sha256, name, to_i64(issued_ms)],
            )?;
            Ok(())
        })
    }

    fn redeem_invite(
        &self,
        token_sha256: &str,
        public_key: &[u8; 32],
    ) -> Result<Redemption, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let found: Option<Option<Vec<u8>>> = tx
                .query_row(
                    "SELECT used_by FROM invites WHERE token_sha256 = ?1",
                    [token_sha256],
                    |r| r.get(0),
                )
                .optional()?;
            let redemption = match found {
                None => Redemption::Unknown,
                Some(Some(by)) if by == public_key => Redemption::Redeemed,
                Some(Some(_)) => Redemption::UsedByAnother,
                Some(None) => {
                    tx.execute(
                        "UPDATE invites SET used_by = ?2 WHERE token_sha256 = ?1",
                        params![token_sha256, &public_key[..]],
                    )?;
                    Redemption::Redeemed
                }
            };
            tx.commit()?;
            Ok(redemption)
        })
    }

    fn participants(&self) -> Result<Vec<ParticipantRecord>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, public_key, name FROM participants ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                let key: Vec<u8> = r.get(1)?;
                let public_key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
                    rusqlite::Error::InvalidColumnType(
                        1,
                        "public_key".into(),
                        rusqlite::types::Type::Blob,
                    )
                })?;
                Ok(ParticipantRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    public_key,
                    name: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn open_round(&self, open: &OpenRoundRecord) -> Result<(), StoreError> {
        let selected = open
            .selected
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO open_round (singleton, round, attempt, selected, base)
                 VALUES (0, ?1, ?2, ?3, ?4)",
                params![to_i64(open.round), open.attempt, selected, &open.base.0[..]],
            )?;
            Ok(())
        })
    }

    fn record_update(&self, u: &UpdateRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO updates (round, attempt, participant, update_digest, blob,
                     num_samples, train_loss, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    to_i64(u.round),
                    u.attempt,
                    to_i64(u.participant),
                    &u.update_digest.0[..],
                    &u.blob.0[..],
                    to_i64(u.num_samples),
                    f64::from(u.train_loss),
                    &u.signature,
                ],
            )?;
            Ok(())
        })
    }

    fn updates(&self, round: u64, attempt: u32) -> Result<Vec<UpdateRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT round, attempt, participant, update_digest, blob, num_samples,
                     train_loss, signature
                 FROM updates WHERE round = ?1 AND attempt = ?2 ORDER BY participant",
            )?;
            let rows = stmt.query_map(params![to_i64(round), attempt], read_update)?;
            rows.collect()
        })
    }

    fn blob_in_use(&self, blob: &Digest, expired: u64) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS(SELECT 1 FROM updates WHERE blob = ?1 AND round > ?2)
                     OR EXISTS(SELECT 1 FROM rounds WHERE global_blob = ?1)
                     OR EXISTS(SELECT 1 FROM strategy_state WHERE blob = ?1)",
                params![&blob.0[..], to_i64(expired)],
                |r| r.get::<_, bool>(0),
            )
        })
    }

    fn updates_of_round(&self, round: u64) -> Result<Vec<UpdateRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT round, attempt, participant, update_digest, blob, num_samples,
                     train_loss, signature
                 FROM updates WHERE round = ?1 ORDER BY attempt, participant",
            )?;
            let rows = stmt.query_map(params![to_i64(round)], read_update)?;
            rows.collect()
        })
    }

    fn close_round(
        &self,
        r: &ClosedRoundRecord,
        strategy_state: &[(String, Digest)],
        ledger: &[Vec<u8>],
        head: &HeadRecord,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            append_ledger_in(&tx, ledger, head)?;
            tx.execute(
                "INSERT INTO rounds (round, global_digest, global_blob, contributors, train_loss, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    to_i64(r.round),
                    &r.global_digest.0[..],
                    &r.global_blob.0[..],
                    r.contributors,
                    r.train_loss,
                    r.summary,
                ],
            )?;
            tx.execute("DELETE FROM open_round", [])?;
            tx.execute("DELETE FROM strategy_state", [])?;
            for (name, blob) in strategy_state {
                tx.execute(
                    "INSERT INTO strategy_state (name, blob) VALUES (?1, ?2)",
                    params![name, &blob.0[..]],
                )?;
            }
            tx.commit()
        })
    }

    fn append_ledger(&self, entries: &[Vec<u8>], head: &HeadRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            append_ledger_in(&tx, entries, head)?;
            tx.commit()
        })
    }

    fn ledger(&self) -> Result<(Vec<Vec<u8>>, Vec<HeadRecord>), StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT entry FROM ledger ORDER BY idx")?;
            let entries = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
            let mut stmt = c.prepare(
                "SELECT size, root, timestamp_ms, signature FROM tree_heads ORDER BY size",
            )?;
            let heads = stmt
                .query_map([], |r| {
                    Ok(HeadRecord {
                        size: r.get::<_, i64>(0)? as u64,
                        root: digest_from(r.get(1)?)?.0,
                        timestamp_ms: r.get::<_, i64>(2)? as u64,
                        signature: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((entries, heads))
        })
    }

    fn finish(&self, error: Option<&str>) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('finished', ?1)",
                [error.unwrap_or("")],
            )?;
            Ok(())
        })
    }

    fn finished(&self) -> Result<Option<Option<String>>, StoreError> {
        self.with(|c| {
            let v: Option<String> = c
                .query_row("SELECT value FROM meta WHERE key = 'finished'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(v.map(|e| (!e.is_empty()).then_some(e)))
        })
    }

    fn closed_rounds(&self) -> Result<Vec<ClosedRoundRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT round, global_digest, global_blob, contributors, train_loss, summary
                 FROM rounds ORDER BY round",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ClosedRoundRecord {
                    round: r.get::<_, i64>(0)? as u64,
                    global_digest: digest_from(r.get(1)?)?,
                    global_blob: digest_from(r.get(2)?)?,
                    contributors: r.get(3)?,
                    train_loss: r.get(4)?,
                    summary: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        self.with(|c| {
            let last: Option<(i64, Vec<u8>)> = c
                .query_row(
                    "SELECT round, global_blob FROM rounds ORDER BY round DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (completed, global_blob) = match last {
                Some((round, blob)) => (round as u64, Some(digest_from(blob)?)),
                None => (0, None),
            };
            let open = c
                .query_row(
                    "SELECT round, attempt, selected, base FROM open_round",
                    [],
                    |r| {
                        Ok(OpenRoundRecord {
                            round: r.get::<_, i64>(0)? as u64,
                            attempt: r.get(1)?,
                            selected: id_list(&r.get::<_, String>(2)?)?,
                            base: digest_from(r.get(3)?)?,
                        })
                    },
                )
                .optional()?;
            let mut stmt = c.prepare("SELECT name, blob FROM strategy_state ORDER BY name")?;
            let strategy_state = stmt
                .query_map([], |r| Ok((r.get(0)?, digest_from(r.get(1)?)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Checkpoint {
                completed,
                global_blob,
                open,
                strategy_state,
            })
        })
    }

    fn record_evaluation(
        &self,
        round: u64,
        participant: u64,
        examples: u64,
        accuracy: f64,
        loss: f64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO evaluations (round, participant, examples, accuracy, loss)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    to_i64(round),
                    to_i64(participant),
                    to_i64(examples),
                    accuracy,
                    loss
                ],
            )?;
            Ok(())
        })
    }

    fn round_evaluations(&self) -> Result<Vec<RoundEvaluation>, StoreError> {
        self.with(|c| {
            // SUM skips the losses of rows recorded before the column existed; the loss is
            // the mean over the reports that carry one. TOTAL, not SUM, over the counts: it
            // sums in floating point, so no report, however large its count, can make the
            // query fail with an integer overflow (and with it the status and the API).
            let mut stmt = c.prepare(
                "SELECT round, TOTAL(accuracy * examples) / TOTAL(examples),
                        SUM(loss * examples) / TOTAL(CASE WHEN loss IS NULL THEN 0 ELSE examples END)
                 FROM evaluations WHERE examples > 0 GROUP BY round ORDER BY round",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(RoundEvaluation {
                    round: r.get::<_, i64>(0)? as u64,
                    accuracy: r.get(1)?,
                    loss: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn record_steward_action(&self, a: &StewardActionRecord) -> Result<bool, StoreError> {
        self.with(|c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO steward_actions
                     (nonce, steward, timestamp_ms, action, participant, applied, refusal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.nonce,
                    a.steward,
                    to_i64(a.timestamp_ms),
                    a.action,
                    a.participant.map(to_i64),
                    a.applied,
                    a.refusal,
                ],
            )?;
            Ok(inserted == 1)
        })
    }

    fn steward_actions(&self) -> Result<Vec<StewardActionRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT nonce, steward, timestamp_ms, action, participant, applied, refusal
                 FROM steward_actions ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StewardActionRecord {
                    nonce: r.get(0)?,
                    steward: r.get(1)?,
                    timestamp_ms: r.get::<_, i64>(2)? as u64,
                    action: r.get(3)?,
                    participant: r.get::<_, Option<i64>>(4)?.map(|p| p as u64),
                    applied: r.get(5)?,
                    refusal: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// Appends entries after those stored (their index continues the sequence) and the head.
fn append_ledger_in(
    tx: &rusqlite::Transaction<'_>,
    entries: &[Vec<u8>],
    head: &HeadRecord,
) -> rusqlite::Result<()> {
    let next: i64 = tx.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))?;
    for (k, entry) in entries.iter().enumerate() {
        tx.execute(
            "INSERT INTO ledger (idx, entry) VALUES (?1, ?2)",
            params![next + k as i64, entry],
        )?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO tree_heads (size, root, timestamp_ms, signature) VALUES (?1, ?2, ?3, ?4)",
        params![to_i64(head.size), &head.root[..], to_i64(head.timestamp_ms), &head.signature],
    )?;
    Ok(())
}
