//! Counts kept per calendar minute (UTC): the requests and tokens of a
//! client key, or the tokens of an upstream, against their limits a
//! minute. A new minute starts every count again from zero. And the
//! requests sent to an upstream in the last 60 s ([`LastMinute`]).

use std::collections::VecDeque;

/// The minute holding `now_ms` (Unix ms), and the seconds left in it (at
/// least 1).
pub fn minute_of(now_ms: i64) -> (i64, u64) {
    let minute = now_ms.div_euclid(60_000);
    let left = (minute + 1) * 60_000 - now_ms;
    (
        minute,
        u64::try_from((left + 999) / 1000).unwrap_or(1).max(1),
    )
}

/// The requests and tokens of one minute.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Window {
    pub minute: i64,
    pub requests: u64,
    pub tokens: u64,
    /// Tokens held for requests of the minute still in flight (their
    /// estimates), until their answers say what they used.
    pub held: u64,
    /// The requests and tokens all machines counted in the minute, as
    /// Redis last said (with `--redis`): what the minute's counts show.
    pub shared: (u64, u64),
}

impl Window {
    /// The counts of the minute holding `now_ms`: these, or none when a
    /// new minute has begun.
    pub fn at(&mut self, now_ms: i64) -> &mut Window {
        let (minute, _) = minute_of(now_ms);
        if self.minute != minute {
            *self = Window {
                minute,
                ..Window::default()
            };
        }
        self
    }

    /// The requests and tokens counted in the minute holding `now_ms`:
    /// this machine's, or all machines' as Redis last said, if more.
    pub fn counts(&self, now_ms: i64) -> (u64, u64) {
        match self.minute == minute_of(now_ms).0 {
            true => (
                self.requests.max(self.shared.0),
                self.tokens.max(self.shared.1),
            ),
            false => (0, 0),
        }
    }
}

/// The requests of the last 60 s against a limit a minute: at most
/// `limit` in any 60 s, at once or spread out.
#[derive(Debug)]
pub struct LastMinute {
    limit: u32,
    /// When each of them was sent, in Unix ms, oldest first.
    sent: VecDeque<i64>,
}

impl LastMinute {
    pub fn new(limit: u32) -> LastMinute {
        LastMinute {
            limit,
            sent: VecDeque::new(),
        }
    }

    /// Takes a request sent at `now_ms`, or says in how many ms the limit
    /// lets one go. A time after `now_ms` (the clock was set back) is
    /// forgotten rather than held against the next minute.
    pub fn take(&mut self, now_ms: i64) -> Result<(), u64> {
        while let Some(&t) = self.sent.front() {
            match now_ms - t >= 60_000 || t > now_ms {
                true => self.sent.pop_front(),
                false => break,
            };
        }
        match self.sent.front() {
            Some(&oldest) if self.sent.len() >= self.limit as usize => {
                Err((oldest + 60_000 - now_ms).max(1) as u64)
            }
            _ => {
                self.sent.push_back(now_ms);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_60_s_hold_more_than_the_limit_s_requests() {
        let mut m = LastMinute::new(3);
        for t in [0, 10, 20] {
            assert_eq!(m.take(t), Ok(()));
        }
        // A burst is let through, then nothing until the first is 60 s old.
        assert_eq!(m.take(30), Err(59_970));
        assert_eq!(m.take(59_999), Err(1));
        assert_eq!(m.take(60_000), Ok(()));
        assert_eq!(m.take(60_005), Err(5));
        assert_eq!(m.take(60_010), Ok(()));
        // Over any 60 s, sent every 1 ms as soon as allowed: at most 3.
        let mut m = LastMinute::new(3);
        let sent: Vec<i64> = (0..300_000).filter(|&t| m.take(t).is_ok()).collect();
        for w in sent.windows(4) {
            assert!(w[3] - w[0] >= 60_000, "{w:?}");
        }
        assert_eq!(sent.len(), 15);
    }

    #[test]
    fn a_clock_set_back_does_not_hold_requests_back_for_long() {
        let mut m = LastMinute::new(1);
        assert_eq!(m.take(1_000_000), Ok(()));
        assert_eq!(m.take(10_000), Ok(()));
        assert_eq!(m.take(10_001), Err(59_999));
    }

    #[test]
    fn a_new_minute_counts_from_zero() {
        let mut w = Window::default();
        w.at(120_500).tokens += 7;
        w.at(179_999).requests += 1;
        assert_eq!(w.counts(150_000), (1, 7));
        assert_eq!(w.counts(180_000), (0, 0));
        assert_eq!(
            *w.at(180_000),
            Window {
                minute: 3,
                ..Window::default()
            }
        );
        assert_eq!(minute_of(179_999), (2, 1));
        assert_eq!(minute_of(120_000), (2, 60));
    }
}
