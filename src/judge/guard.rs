//! The catastrophic guard: no statistics, just "the canary is failing half its requests".
//! It looks at the canary's most recent requests (the shortest run of latest windows
//! holding at least `min_requests`), so a canary that starts crashing late is caught as
//! fast as one that crashes at once.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// What the guard saw when it fired.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardTrip {
    pub at_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub bound: f64,
}

#[derive(Debug, Clone)]
pub struct Guard {
    bound: f64,
    min_requests: u64,
    recent: VecDeque<(u64, u64)>,
    requests: u64,
    errors: u64,
    tripped: Option<GuardTrip>,
}

impl Guard {
    pub fn new(bound: f64, min_requests: u64) -> Guard {
        Guard {
            bound,
            min_requests: min_requests.max(1),
            recent: VecDeque::new(),
            requests: 0,
            errors: 0,
            tripped: None,
        }
    }

    /// Add the canary's counts of one window; returns true when the guard fires (once).
    pub fn observe(&mut self, at_ms: u64, requests: u64, errors: u64) -> bool {
        if self.tripped.is_some() || requests == 0 {
            return false;
        }
        self.recent.push_back((requests, errors));
        self.requests += requests;
        self.errors += errors;
        while let Some(&(r, e)) = self.recent.front() {
            if self.requests - r >= self.min_requests {
                self.recent.pop_front();
                self.requests -= r;
                self.errors -= e;
            } else {
                break;
            }
        }
        if self.requests >= self.min_requests
            && self.errors as f64 >= self.bound * self.requests as f64
        {
            self.tripped = Some(GuardTrip {
                at_ms,
                requests: self.requests,
                errors: self.errors,
                bound: self.bound,
            });
            return true;
        }
        false
    }

    pub fn tripped(&self) -> Option<GuardTrip> {
        self.tripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_half_errors_only_after_enough_requests() {
        let mut g = Guard::new(0.5, 20);
        assert!(!g.observe(1000, 10, 10)); // 10 requests: not enough yet
        assert!(g.observe(2000, 10, 5)); // 15 of 20
        let t = g.tripped().unwrap();
        assert_eq!((t.at_ms, t.requests, t.errors), (2000, 20, 15));
        assert!(!g.observe(3000, 10, 10), "fires once");
    }

    #[test]
    fn looks_at_recent_requests_so_late_crashes_are_caught() {
        let mut g = Guard::new(0.5, 20);
        for s in 1..=600 {
            assert!(!g.observe(s * 1000, 10, u64::from(s % 50 == 0)));
        }
        assert!(!g.observe(601_000, 10, 6));
        assert!(g.observe(602_000, 10, 6));
    }

    #[test]
    fn healthy_noise_does_not_fire() {
        let mut g = Guard::new(0.5, 20);
        for s in 1..=1000 {
            assert!(!g.observe(s * 1000, 10, u64::from(s % 3 == 0)));
        }
        assert!(g.tripped().is_none());
    }
}
