//! Rate limits of public keys (CONTRACT.md section 11): token buckets in
//! memory, per replica, one per key and one per person, in a map bounded in
//! size however many distinct_ids a replica sees.
//!
//! A bucket holds up to `burst` tokens and gains `per_second` tokens a
//! second; a request takes one, or is refused with the time until one is
//! there. Time comes from a [`Clock`], so tests move it by hand.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::metrics::Tally;

/// A limit: `per_second` tokens a second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// A limit of `per_second` requests a second with bursts of `burst`;
    /// `None` unless both are positive and finite.
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0 && burst > 0).then_some(Self {
            per_second,
            burst: f64::from(burst),
        })
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `RATE/s` or `RATE/min`, then optionally `,burst=N` (default: one
    /// second's worth, at least 1): `50/s,burst=100`, `600/min`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "{s:?} is not a rate: write RATE/s or RATE/min, optionally with ,burst=N \
                 (e.g. 50/s,burst=100)"
            )
        };
        let (rate, burst) = match s.split_once(',') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (s, None),
        };
        let (count, unit) = rate.trim().split_once('/').ok_or_else(invalid)?;
        let count: f64 = count.trim().parse().map_err(|_| invalid())?;
        let per_second = match unit.trim() {
            "s" | "sec" | "second" => count,
            "m" | "min" | "minute" => count / 60.0,
            _ => return Err(invalid()),
        };
        let burst = match burst {
            Some(b) => b
                .trim()
                .strip_prefix("burst=")
                .and_then(|n| n.trim().parse::<u32>().ok())
                .ok_or_else(invalid)?,
            // A float that is positive and below u32::MAX after ceil; the
            // cast saturates anyway.
            None => per_second.ceil().max(1.0) as u32,
        };
        Rate::new(per_second, burst).ok_or_else(invalid)
    }
}

/// Where a limiter reads the time: the time elapsed since some fixed start.
pub trait Clock: Send + Sync {
    /// The time since the clock's start; never goes back.
    fn now(&self) -> Duration;
}

/// The monotonic clock of the process.
pub struct SystemClock(Instant);

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self(Instant::now())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// One bucket: its tokens at `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// Shards spread the lock: requests of different keys rarely wait on one
/// another.
const SHARDS: usize = 16;

/// Token buckets by key, at most `capacity` of them (up to the rounding of
/// shards).
///
/// Keys are kept as 64-bit hashes (with a per-process random seed, so no
/// one can aim collisions), so an entry is a few dozen bytes whatever the
/// distinct_id. A shard that fills up first forgets buckets that have
/// refilled (a full bucket is the same as none, so this loses nothing),
/// then, if that is not enough, the least recently used half: those persons
/// get a fresh burst, the price of a memory bound.
pub(crate) struct Limiter {
    rate: Rate,
    shards: Box<[Mutex<HashMap<u64, Bucket>>]>,
    per_shard: usize,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    refused: Tally,
}

impl Limiter {
    /// Buckets of `rate`, at most about `capacity` of them, timed by
    /// `clock`; each refusal adds one to `refused`.
    pub(crate) fn new(rate: Rate, capacity: usize, clock: Arc<dyn Clock>, refused: Tally) -> Self {
        Self {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(2),
            hasher: RandomState::new(),
            clock,
            refused,
        }
    }

    /// Takes a token of `key`'s bucket; `Err` with how long until one is
    /// there when it is empty.
    pub(crate) fn take(&self, key: impl Hash) -> Result<(), Duration> {
        let hash = self.hasher.hash_one(key);
        let now = self.clock.now();
        let shard = &self.shards[(hash % SHARDS as u64) as usize];
        // A poisoned lock only means another request panicked mid-update of
        // plain numbers; the map is still usable.
        let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&hash) && buckets.len() >= self.per_shard {
            self.make_room(&mut buckets, now);
        }
        let rate = self.rate;
        let bucket = buckets.entry(hash).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let refilled = (now.saturating_sub(bucket.at)).as_secs_f64() * rate.per_second;
        bucket.tokens = (bucket.tokens + refilled).min(rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            self.refused.inc();
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }

    /// Frees room in a full shard: refilled buckets go first; if fewer than
    /// a quarter went, the least recently used go down to half the shard,
    /// so that the next inserts find room at once (amortized O(1)).
    fn make_room(&self, buckets: &mut HashMap<u64, Bucket>, now: Duration) {
        let rate = self.rate;
        buckets.retain(|_, b| {
            b.tokens + now.saturating_sub(b.at).as_secs_f64() * rate.per_second < rate.burst
        });
        if buckets.len() * 4 <= self.per_shard * 3 {
            return;
        }
        let mut ages: Vec<Duration> = buckets.values().map(|b| b.at).collect();
        let keep = self.per_shard / 2;
        let cut = ages.len() - keep;
        let (_, oldest_kept, _) = ages.select_nth_unstable(cut);
        let oldest_kept = *oldest_kept;
        buckets.retain(|_, b| b.at > oldest_kept);
    }

    /// How many buckets are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A clock moved by hand.
    #[derive(Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    fn limiter(rate: &str, capacity: usize) -> (Limiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let rate = rate.parse().unwrap();
        (
            Limiter::new(
                rate,
                capacity,
                clock.clone(),
                crate::metrics::Metrics::new().rate_limit("test"),
            ),
            clock,
        )
    }

    #[test]
    fn rates_parse_with_their_burst_and_bad_ones_are_refused() {
        assert_eq!("50/s,burst=100".parse(), Ok(Rate::new(50.0, 100).unwrap()));
        assert_eq!("5/s".parse(), Ok(Rate::new(5.0, 5).unwrap()));
        assert_eq!("60/min".parse(), Ok(Rate::new(1.0, 1).unwrap()));
        for bad in [
            "",
            "50",
            "0/s",
            "-1/s",
            "5/h",
            "5/s,burst=0",
            "5/s,100",
            "nan/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_requests_wait_for_the_refill() {
        let (limiter, clock) = limiter("5/s,burst=20", 1000);
        for i in 0..20 {
            assert_eq!(limiter.take("ada"), Ok(()), "request {i} of the burst");
        }
        let wait = limiter.take("ada").unwrap_err();
        assert_eq!(wait, Duration::from_millis(200), "one token at 5/s");
        // Another key has its own bucket.
        assert_eq!(limiter.take("bo"), Ok(()));

        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.take("ada").unwrap_err(), Duration::from_millis(100));
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.take("ada"), Ok(()), "refilled one token");
        assert!(limiter.take("ada").is_err());

        // A long pause refills up to the burst, never beyond.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..20 {
            assert_eq!(limiter.take("ada"), Ok(()));
        }
        assert!(limiter.take("ada").is_err());
    }

    #[test]
    fn millions_of_keys_keep_the_map_within_its_capacity() {
        let (limiter, clock) = limiter("5/s,burst=20", 10_000);
        for i in 0..2_000_000u32 {
            let _ = limiter.take(i);
            if i % 1000 == 0 {
                clock.advance(Duration::from_millis(1));
                assert!(
                    limiter.len() <= 10_000 + SHARDS,
                    "{} buckets",
                    limiter.len()
                );
            }
        }
        assert!(
            limiter.len() <= 10_000 + SHARDS,
            "{} buckets",
            limiter.len()
        );
        // Recent keys are remembered: a drained one stays drained.
        for _ in 0..20 {
            let _ = limiter.take("drained");
        }
        assert!(limiter.take("drained").is_err());
    }
}
