//! The coordinator's state has one owner: a thread that runs, in order, the jobs the gRPC
//! handlers and the dashboard hand it, and wakes the round core at its deadlines between them
//! (as quinn's endpoint driver does for its connections). Nothing else touches the driver, so
//! no lock is held across an await or an fsync, the store is written from one thread, and a
//! storage failure stops every later job at one place: once a write failed, each job is
//! answered `unavailable` until the coordinator restarts from what is on disk (as redb
//! poisons itself after an I/O error).
//!
//! A job is a closure over the driver's typed methods, and its answer is their domain result
//! (`Result<T, Rejection>`); transport types stay in `service.rs`. After each job, before its
//! answer is sent, the driver republishes its status snapshot, which `GetStatus` reads without
//! joining the queue. The queue is unbounded, but
//! what can be in it at once is bounded by the listener's caps on connections and on calls
//! per connection.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::ServerError;
use crate::driver::Driver;
use crate::rejection::Rejection;

type Job = Box<dyn FnOnce(&mut Driver) + Send>;

/// How often silent participants are looked for.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// A handle on the coordinator's thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct Actor {
    jobs: mpsc::Sender<Job>,
}

/// The jobs sent to an [`Actor`] before its driver starts.
pub(crate) struct Inbox(mpsc::Receiver<Job>);

impl Inbox {
    /// Moves the driver onto its own thread, to run the jobs; it runs until every handle is
    /// dropped.
    pub(crate) fn start(self, driver: Driver) -> Result<(), std::io::Error> {
        std::thread::Builder::new()
            .name("coordinator".into())
            .spawn(move || run(driver, &self.0))?;
        Ok(())
    }
}

impl Actor {
    /// A handle, and the inbox its jobs wait in until [`Inbox::start`] gives it a driver.
    pub(crate) fn new() -> (Self, Inbox) {
        let (jobs, inbox) = mpsc::channel();
        (Self { jobs }, Inbox(inbox))
    }

    /// Runs `job` on the driver and waits for its answer without blocking the runtime.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Driver) -> Result<T, Rejection> + Send + 'static,
    ) -> Result<T, Rejection> {
        let answer = self.submit(job)?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`Actor::call`] from a thread that may block (the dashboard's views run on the
    /// runtime's blocking pool).
    pub(crate) fn call_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Driver) -> Result<T, Rejection> + Send + 'static,
    ) -> Result<T, Rejection> {
        let answer = self.submit(job)?;
        answer.blocking_recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Runs `job` without waiting for it (a closed long poll's bookkeeping).
    pub(crate) fn tell(&self, job: impl FnOnce(&mut Driver) + Send + 'static) {
        let _ = self.jobs.send(Box::new(move |d: &mut Driver| {
            if d.fatal().is_none() {
                job(d);
                d.publish_status();
            }
        }));
    }

    fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Driver) -> Result<T, Rejection> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, Rejection>>, Rejection> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |d: &mut Driver| {
            let out = match d.fatal() {
                Some(e) => Err(Rejection::unavailable(format!(
                    "the coordinator stopped accepting after a storage failure and must be restarted: {e}"
                ))),
                None => {
                    let out = job(d);
                    // Before the answer: whoever hears it and then asks for the status sees
                    // what this job did.
                    d.publish_status();
                    out
                }
            };
            let _ = reply.send(out);
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        Ok(answer)
    }
}

/// Runs `work` on the driver; a panic in it (a bug) stops the driver as a failed write does,
/// rather than killing the thread and leaving every caller waiting: the coordinator then
/// restarts from what is on disk. Its caller hears "shutting down" (the reply was dropped).
fn guarded(driver: &mut Driver, work: impl FnOnce(&mut Driver)) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(driver))).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("a coordinator job panicked ({what}); restart it to resume from disk")
    })
}

fn stopped() -> Rejection {
    Rejection::unavailable("the coordinator is shutting down")
}

/// The coordinator's loop: jobs as they come, the core's deadlines and the liveness check when
/// due (before any waiting job, so a flood of calls cannot hold a deadline back).
fn run(mut driver: Driver, inbox: &mpsc::Receiver<Job>) {
    let mut next_liveness = Instant::now() + LIVENESS_EVERY;
    loop {
        let now = Instant::now();
        // A stopped driver has no deadlines to keep: it only answers "unavailable".
        let deadline = driver
            .fatal()
            .is_none()
            .then(|| driver.next_deadline())
            .flatten();
        let wake = deadline.map_or(next_liveness, |d| d.min(next_liveness));
        if now >= wake {
            if now >= next_liveness {
                next_liveness = now + LIVENESS_EVERY;
            }
            if driver.fatal().is_none() {
                let ticked = guarded(&mut driver, |d| {
                    if let Err(e) = d.on_timer().and_then(|()| d.check_liveness()) {
                        d.stop(e);
                    }
                });
                if let Err(why) = ticked {
                    driver.stop(ServerError::Config(why));
                }
                if driver.fatal().is_none() {
                    driver.publish_status();
                }
            }
            continue;
        }
        match inbox.recv_timeout(wake - now) {
            Ok(job) => {
                if let Err(why) = guarded(&mut driver, job) {
                    driver.stop(ServerError::Config(why));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
