//! Time as a value. The sans-IO cores never read a clock: callers pass an [`Instant`] in, and
//! the cores say when they next need to be woken (`poll_timeout`). The simulator drives a
//! virtual clock; the radios map the monotonic clock onto the same type.

use core::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time, as the duration since an arbitrary epoch (the start of a run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// The instant `d` after the epoch.
    pub const fn from_epoch(d: Duration) -> Self {
        Self(d)
    }

    /// Milliseconds after the epoch, convenient in tests.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// Time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d);
    }
}
