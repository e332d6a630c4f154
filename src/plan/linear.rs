//! Linear: launch, then `step` % more traffic every `every` (analysed when the service
//! has an analysis, held otherwise) up to 100 %, promote, retire.

use super::expand::{Expansion, Raw};
use super::{Action, ms};
use crate::release::Service;

pub(super) fn steps(ex: &Expansion, s: &Service) -> Vec<Raw> {
    let mut raw = Vec::new();
    let (step, every) = s
        .linear
        .as_ref()
        .map_or((100, 0), |l| (l.step.max(1), ms(l.every.0)));
    ex.prelude(&mut raw);
    let mut w = 0u8;
    while w < 100 {
        w = w.saturating_add(step).min(100);
        raw.push((Action::SetWeight { weight: w }, w, 0, Some(0)));
        if w < 100 {
            let action = if s.analysis.is_some() {
                Action::Analysis { duration_ms: every }
            } else {
                Action::Pause {
                    duration_ms: Some(every),
                }
            };
            raw.push((action, w, every, Some(every)));
        }
    }
    raw.push((Action::Promote, 100, 0, Some(0)));
    raw.push((
        Action::Retire {
            drain_timeout_ms: ex.drain,
        },
        100,
        0,
        Some(ex.drain),
    ));
    raw
}
