//! A release with tenants as the engine runs it: one release whose services are every
//! tenant's services, named `TENANT/SERVICE` (dependencies stay inside the tenant), each
//! resolved with its tenant's variables and validation. The fleet's tables (`[[tenant]]`,
//! `[[ring]]`, `[flags]`, `failure_budget`) are kept: they tell the engine which services
//! belong to which tenant and in which ring. This is what a run journals, so `resume`
//! needs nothing else.

use super::Release;
use super::fleet::TenantRelease;
use super::tenants::qualified;

/// The release of `base` with every tenant's services (`resolved`, from
/// `LoadedRelease::tenants`, in tenant order) in place of its own. Without tenants,
/// `base` unchanged.
pub fn flatten(base: &Release, resolved: &[TenantRelease]) -> Release {
    if base.tenants.is_empty() {
        return base.clone();
    }
    let services = resolved
        .iter()
        .flat_map(|t| {
            t.release.services.iter().map(|s| {
                let mut s = s.clone();
                s.name = qualified(&t.name, &s.name);
                s.depends_on = s.depends_on.iter().map(|d| qualified(&t.name, d)).collect();
                s
            })
        })
        .collect();
    Release {
        release: base.release.clone(),
        notify: base.notify.clone(),
        metrics: base.metrics.clone(),
        services,
        migrations: base.migrations.clone(),
        freeze: base.freeze.clone(),
        flags: base.flags.clone(),
        tenants: base.tenants.clone(),
        rings: base.rings.clone(),
        env_values: base.env_values.clone(),
    }
}

/// The tenant of a service of a flattened release (`acme` of `acme/api`).
pub fn tenant_of(service: &str) -> Option<&str> {
    service.split_once('/').map(|(t, _)| t)
}
