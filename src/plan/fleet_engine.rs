//! The plan the engine runs for a release with tenants (a flattened release, see
//! `release::flatten`): every tenant's services with the steps of its own plan, and each
//! service's wave counted inside its tenant (tenants do not wait for each other's waves;
//! rings and `max_parallel` tenants decide when a tenant starts). `waves[i]` lists the
//! i-th wave of every tenant.

use super::{Plan, plan};
use crate::release::Release;
use crate::release::flatten::tenant_of;

/// The plan of `release` for the engine: [`plan`] without tenants, else each tenant
/// planned on its own and the results put together in tenant order.
pub fn engine_plan(release: &Release) -> Plan {
    if release.tenants.is_empty() {
        return plan(release);
    }
    let mut sub = Release {
        release: release.release.clone(),
        notify: None,
        metrics: release.metrics.clone(),
        services: Vec::new(),
        migrations: Vec::new(),
        freeze: Vec::new(),
        flags: None,
        tenants: Vec::new(),
        rings: Vec::new(),
        env_values: Vec::new(),
    };
    let mut out = plan(&sub);
    out.migrations = Vec::new();
    let mut start = 0;
    while start < release.services.len() {
        let tenant = tenant_of(&release.services[start].name).unwrap_or_default();
        let end = release.services[start..]
            .iter()
            .position(|s| tenant_of(&s.name).unwrap_or_default() != tenant)
            .map_or(release.services.len(), |n| start + n);
        sub.services = release.services[start..end].to_vec();
        let p = plan(&sub);
        for (i, w) in p.waves.into_iter().enumerate() {
            if out.waves.len() <= i {
                out.waves.push(Vec::new());
            }
            out.waves[i].extend(w);
        }
        out.services.extend(p.services);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_are_counted_inside_each_tenant() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet.toml");
        let loaded = crate::release::load(&path, &Default::default())
            .unwrap_or_else(|d| panic!("{path:?}: {d:?}"));
        let flat = crate::release::flatten::flatten(&loaded.release, &loaded.tenants);
        let p = engine_plan(&flat);
        assert_eq!(p.services.len(), 16);
        assert_eq!(p.waves.len(), 2);
        let api = p.services.iter().find(|s| s.name == "stark/api").unwrap();
        let web = p.services.iter().find(|s| s.name == "stark/web").unwrap();
        assert_eq!((api.wave, web.wave), (0, 1));
        assert_eq!(web.depends_on, vec!["stark/api".to_string()]);
        assert_eq!(api.dependents, vec!["stark/web".to_string()]);
    }
}
