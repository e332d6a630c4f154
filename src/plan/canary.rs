//! Canary: the release's own steps (weights, analyses, pauses, approvals) after the
//! launch, then 100 %, promote, retire the old revision.

use super::expand::{Expansion, Raw};
use super::{Action, ms};
use crate::release::{PauseFor, Service, Step};

pub(super) fn steps(ex: &Expansion, s: &Service) -> Vec<Raw> {
    let mut raw = Vec::new();
    ex.prelude(&mut raw);
    let mut w = 0u8;
    for st in &s.steps {
        match st {
            Step::SetWeight(x) => {
                w = *x;
                raw.push((Action::SetWeight { weight: w }, w, 0, Some(0)));
            }
            Step::Analysis(d) => raw.push((
                Action::Analysis {
                    duration_ms: ms(d.0),
                },
                w,
                ms(d.0),
                Some(ms(d.0)),
            )),
            Step::Pause(PauseFor::For(d)) => raw.push((
                Action::Pause {
                    duration_ms: Some(ms(d.0)),
                },
                w,
                ms(d.0),
                Some(ms(d.0)),
            )),
            Step::Pause(PauseFor::Forever) => {
                raw.push((Action::Pause { duration_ms: None }, w, 0, None))
            }
            Step::Approval {
                timeout,
                on_timeout,
                approvals,
                approvers,
                four_eyes,
            } => raw.push((
                Action::Approval {
                    timeout_ms: ms(timeout.0),
                    on_timeout: *on_timeout,
                    approvals: *approvals,
                    approvers: approvers.clone(),
                    four_eyes: *four_eyes,
                },
                w,
                0,
                Some(ms(timeout.0)),
            )),
        }
    }
    if w < 100 {
        raw.push((Action::SetWeight { weight: 100 }, 100, 0, Some(0)));
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
