//! Stand-in for lane D's `History` (issue 14, plan: `History::new()`,
//! `push(at_unix_ms, &Totals)`, `to_json()`), so that the master's 5 s
//! push and `/status.json` compile and run on this branch. Lane D's module
//! replaces this file when the branches are merged.

use crate::Totals;
use std::collections::VecDeque;

/// 10 minutes of 5 s samples.
const SAMPLES: usize = 120;

/// The last samples of the master's totals.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<(u64, u64)>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn push(&mut self, at_unix_ms: u64, totals: &Totals) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at_unix_ms, totals.count()));
    }

    /// `[{"at": ms, "requests": n}, …]`.
    pub fn to_json(&self) -> String {
        let items: Vec<String> = self
            .samples
            .iter()
            .map(|(at, n)| format!("{{\"at\":{at},\"requests\":{n}}}"))
            .collect();
        format!("[{}]", items.join(","))
    }
}
