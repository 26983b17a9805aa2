//! Counts kept per calendar minute (UTC): the requests and tokens of a
//! client key, or the tokens of an upstream, against their limits a
//! minute. A new minute starts every count again from zero.

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

#[cfg(test)]
mod tests {
    use super::*;

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
