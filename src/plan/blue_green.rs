//! Blue-green: launch, an approval unless `auto_promote`, switch all traffic at once,
//! bake under analysis, promote, keep the old revision warm, then retire it.

use super::expand::{Expansion, Raw};
use super::{Action, ms};
use crate::release::{OnTimeout, Service};

pub(super) fn steps(ex: &Expansion, s: &Service) -> Vec<Raw> {
    let mut raw = Vec::new();
    let bg = s.blue_green.clone().unwrap_or_default();
    ex.prelude(&mut raw);
    if !bg.auto_promote {
        raw.push((
            Action::Approval {
                timeout_ms: ex.deadline,
                on_timeout: OnTimeout::Rollback,
                approvals: 1,
                approvers: Vec::new(),
                four_eyes: false,
            },
            0,
            0,
            Some(ex.deadline),
        ));
    }
    raw.push((Action::Switch, 100, 0, Some(0)));
    if let Some(a) = &s.analysis {
        let d = ms(a.min_duration.0);
        raw.push((
            Action::Bake { duration_ms: d },
            100,
            d,
            Some(ex.deadline.max(d)),
        ));
    }
    raw.push((Action::Promote, 100, 0, Some(0)));
    let keep = ms(bg.keep_old_for.0);
    raw.push((Action::KeepOld { duration_ms: keep }, 100, keep, Some(keep)));
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
