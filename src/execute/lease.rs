//! The executor lease: only the replica holding it reconciles and executes purchases; the others
//! stay in standby and serve the read APIs.
//!
//! A row in `leases` with a holder, an expiry and a **fencing token**, taken and renewed by one
//! upsert whose `WHERE` accepts only the current holder or an expired lease. Three rules make it
//! safe with paused processes and skewed clocks:
//!
//! * **The database's clock times it.** Expiry is computed and compared with the database
//!   server's clock (`sql::now_ms_sql`), never a replica's wall clock, so a replica whose clock
//!   runs ahead cannot take a lease early, nor one whose clock lags keep it late.
//! * **The token fences every provider call.** The token goes up by one whenever the lease
//!   changes hands (or its holder comes back after letting it lapse). The executor records each
//!   provider call's intent in a transaction that first checks, under a row lock, that this
//!   replica still holds the lease with the token it acquired ([`Fence`]); a replica that lost
//!   it, was paused (SIGSTOP) past its TTL, or whose clock jumped, fails that check and calls
//!   nothing. A takeover waits for a check in flight to commit, and then sees its intent.
//! * **A local monotonic deadline stops calls before the database would.** [`Lease::fence`]
//!   answers only while less than the TTL minus a margin has passed (on the monotonic clock,
//!   which keeps counting while the process is stopped) since the renewal that confirmed it.
//!
//! Release on shutdown expires the row instead of deleting it, so tokens only ever grow.

use crate::store::sql::{self, Row};
use crate::store::Store;
use chrono::Duration;
use std::sync::Mutex;
use std::time::Instant;

pub const EXECUTOR_LEASE: &str = "executor";

pub use crate::proposals::Fence;

#[derive(Debug)]
pub struct Lease {
    store: Store,
    name: String,
    holder: String,
    ttl: Duration,
    /// The token and the monotonic instant until which it may be used (None: not held).
    held: Mutex<Option<(i64, Instant)>>,
}

impl Lease {
    pub fn new(store: Store, name: &str, holder: &str, ttl: Duration) -> Lease {
        Lease {
            store,
            name: name.into(),
            holder: holder.into(),
            ttl,
            held: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews the lease on the database's clock; true when this replica holds it for
    /// the next TTL.
    pub async fn try_acquire(&self) -> Result<bool, sqlx::Error> {
        let started = Instant::now();
        let now = sql::now_ms_sql(&self.store);
        let ttl_ms = self.ttl.num_milliseconds().max(1);
        // The token is kept while the same holder renews an unexpired lease, and goes up by one
        // whenever anyone (the same holder included) takes a lapsed one.
        let rows = sql::fetch(
            &self.store,
            &format!(
                "INSERT INTO leases (name, holder, expires_at_ms, token) VALUES ($1, $2, {now} + $3, 1) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at_ms = excluded.expires_at_ms, \
                 token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at_ms > {now} \
                              THEN leases.token ELSE leases.token + 1 END \
                 WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= {now} \
                 RETURNING token"
            ),
            &[
                self.name.clone().into(),
                self.holder.clone().into(),
                ttl_ms.into(),
            ],
        )
        .await?;
        let token = rows.first().and_then(|r: &Row| r.int(0).ok());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = token.map(|t| {
            // A third of the TTL is kept as margin for the time the provider call itself takes
            // to reach the provider after the fence check.
            let usable = std::time::Duration::from_millis((ttl_ms as u64) * 2 / 3);
            (t, started + usable)
        });
        Ok(held.is_some())
    }

    /// The fence to present with a provider call, while the lease is held and its local
    /// deadline has not passed; None otherwise (call nothing).
    pub fn fence(&self) -> Option<Fence> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match *held {
            Some((token, until)) if Instant::now() < until => Some(Fence {
                name: self.name.clone(),
                holder: self.holder.clone(),
                token,
            }),
            _ => None,
        }
    }

    /// Gives the lease up (on shutdown), so a standby replica takes over without waiting. The
    /// row stays (expired) so that the next holder's token is larger than every earlier one.
    pub async fn release(&self) -> Result<(), sqlx::Error> {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
        sql::execute(
            &self.store,
            "UPDATE leases SET expires_at_ms = 0 WHERE name = $1 AND holder = $2",
            &[self.name.clone().into(), self.holder.clone().into()],
        )
        .await?;
        Ok(())
    }

    /// The current holder, expiry (database clock, ms) and token, if any.
    pub async fn current(&self) -> Result<Option<(String, i64, i64)>, sqlx::Error> {
        let rows = sql::fetch(
            &self.store,
            "SELECT holder, expires_at_ms, token FROM leases WHERE name = $1",
            &[self.name.clone().into()],
        )
        .await?;
        Ok(rows
            .first()
            .and_then(|r| Some((r.text(0).ok()?, r.int(1).ok()?, r.int(2).ok()?))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposals::check_fence;

    async fn fenced(store: &Store, fence: &Fence) -> bool {
        let mut tx = sql::Tx::begin(store).await.unwrap();
        let ok = check_fence(&mut tx, fence).await.unwrap();
        tx.commit().await.unwrap();
        ok
    }

    #[tokio::test]
    async fn one_holder_at_a_time_on_the_database_clock_with_a_growing_token() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let ttl = Duration::milliseconds(600);
        let a = Lease::new(store.clone(), EXECUTOR_LEASE, "replica-a", ttl);
        let b = Lease::new(store.clone(), EXECUTOR_LEASE, "replica-b", ttl);
        assert!(a.try_acquire().await.unwrap());
        let fa = a.fence().expect("a holds it");
        assert_eq!(fa.token, 1);
        assert!(!b.try_acquire().await.unwrap());
        assert!(b.fence().is_none());
        // Renewal keeps the token.
        assert!(a.try_acquire().await.unwrap());
        assert_eq!(a.fence().unwrap().token, 1);
        assert!(fenced(&store, &fa).await);
        // a stops renewing (paused): its local deadline passes first, then the database's.
        tokio::time::sleep(std::time::Duration::from_millis(450)).await;
        assert!(a.fence().is_none(), "2/3 of the TTL gone: no more calls");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert!(b.try_acquire().await.unwrap());
        let fb = b.fence().unwrap();
        assert_eq!(fb.token, 2);
        // a's old fence fails in the database even if a still believed it held the lease.
        assert!(!fenced(&store, &fa).await);
        assert!(fenced(&store, &fb).await);
        assert!(!a.try_acquire().await.unwrap());
        assert_eq!(b.current().await.unwrap().unwrap().0, "replica-b");
        // Release keeps the row: the next holder's token is larger still.
        b.release().await.unwrap();
        assert!(!fenced(&store, &fb).await);
        assert!(a.try_acquire().await.unwrap());
        assert_eq!(a.fence().unwrap().token, 3);
    }
}
