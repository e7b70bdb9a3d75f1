//! The executor lease: only the replica holding it reconciles and executes purchases; the others
//! stay in standby and serve the read APIs.
//!
//! A row in `leases` with a holder and an expiry, taken and renewed by one upsert whose
//! `WHERE` accepts only the current holder or an expired lease. The same statement works on
//! SQLite and PostgreSQL, and the database's row lock makes it atomic, so two replicas can never
//! both see "acquired". A crashed holder's lease lapses after its TTL; a stopping holder releases
//! it at once. The lease is belt and braces: each proposal's `approved -> executing` transition
//! is itself a compare-and-set, and purchases are idempotent per key.

use crate::providers::sql;
use crate::store::Store;
use chrono::{DateTime, Duration, Utc};

pub const EXECUTOR_LEASE: &str = "executor";

#[derive(Clone, Debug)]
pub struct Lease {
    store: Store,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub fn new(store: Store, name: &str, holder: &str, ttl: Duration) -> Lease {
        Lease {
            store,
            name: name.into(),
            holder: holder.into(),
            ttl,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews the lease; true when this replica holds it until `now + ttl`.
    pub async fn try_acquire(&self, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let changed = sql::execute(
            &self.store,
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= $4",
            &[
                self.name.clone().into(),
                self.holder.clone().into(),
                (now + self.ttl).timestamp_millis().into(),
                now.timestamp_millis().into(),
            ],
        )
        .await?;
        Ok(changed == 1)
    }

    /// Gives the lease up (on shutdown), so a standby replica takes over without waiting.
    pub async fn release(&self) -> Result<(), sqlx::Error> {
        sql::execute(
            &self.store,
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[self.name.clone().into(), self.holder.clone().into()],
        )
        .await?;
        Ok(())
    }

    /// The current holder and expiry, if any.
    pub async fn current(&self) -> Result<Option<(String, i64)>, sqlx::Error> {
        let rows = sql::fetch(
            &self.store,
            "SELECT holder, expires_at_ms FROM leases WHERE name = $1",
            &[self.name.clone().into()],
        )
        .await?;
        Ok(rows
            .first()
            .and_then(|r| Some((r.text(0).ok()?, r.int(1).ok()?))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn one_holder_at_a_time_until_expiry_or_release() {
        let (_d, store) = crate::proposals::tests::sqlite().await;
        let ttl = Duration::seconds(30);
        let a = Lease::new(store.clone(), EXECUTOR_LEASE, "replica-a", ttl);
        let b = Lease::new(store.clone(), EXECUTOR_LEASE, "replica-b", ttl);
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap();
        assert!(a.try_acquire(t0).await.unwrap());
        assert!(!b.try_acquire(t0).await.unwrap());
        // The holder renews; the other still cannot take it before expiry.
        assert!(a.try_acquire(t0 + Duration::seconds(20)).await.unwrap());
        assert!(!b.try_acquire(t0 + Duration::seconds(40)).await.unwrap());
        // a stops renewing (crash): b takes over after the TTL.
        assert!(b.try_acquire(t0 + Duration::seconds(51)).await.unwrap());
        assert!(!a.try_acquire(t0 + Duration::seconds(52)).await.unwrap());
        assert_eq!(b.current().await.unwrap().unwrap().0, "replica-b");
        b.release().await.unwrap();
        assert!(a.try_acquire(t0 + Duration::seconds(53)).await.unwrap());
    }
}
