//! Rolling: replace the instances batch by batch (local), or let the ECS deployment
//! controller do it and watch it.

use super::Action;
use super::expand::{Expansion, Raw};
use crate::release::Service;

/// On ECS: one rolling update by the ECS deployment controller.
pub(super) fn ecs_steps(ex: &Expansion) -> Vec<Raw> {
    vec![
        (
            Action::EcsRollingUpdate,
            100,
            ex.healthy_min,
            Some(ex.deadline),
        ),
        (Action::Promote, 100, 0, Some(0)),
    ]
}

/// Locally: batches of `rolling.batch` instances.
pub(super) fn steps(ex: &Expansion, s: &Service) -> Vec<Raw> {
    let mut raw = Vec::new();
    let r = s.rolling.clone().unwrap_or_default();
    let batch = r.batch.max(1);
    let batches = ex.replicas.div_ceil(batch);
    let mut replaced = 0u32;
    for b in 0..batches {
        let n = batch.min(ex.replicas - replaced);
        replaced += n;
        let w = ((u64::from(replaced) * 100) / u64::from(ex.replicas.max(1))) as u8;
        raw.push((
            Action::ReplaceBatch {
                batch: b + 1,
                of: batches,
                instances: n,
            },
            w,
            ex.healthy_min,
            Some(ex.deadline),
        ));
    }
    raw.push((Action::Promote, 100, 0, Some(0)));
    raw
}
