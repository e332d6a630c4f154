//! The fleet view's model: a release with tenants shown as one tree, rings → tenants →
//! services, each ring and tenant collapsible, filtered by tenant name or `tag:TAG`.
//! Pure: it reads the engine's [`FleetState`] and holds only what the person chose
//! (what is open, the filter, the cursor). The visible rows are built when the shape,
//! the filter or what is open changes; moving the cursor and scrolling are O(1).

use std::collections::HashMap;

use crate::engine::ServiceState;
use crate::engine::state::{FleetState, TenantState};

/// One node of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetNode {
    /// Index into [`FleetState::rings`].
    Ring(usize),
    /// Index into [`FleetState::tenants`].
    Tenant(usize),
    /// A service (`index` into `ReleaseState::services`) of `tenant`.
    Service { tenant: usize, index: usize },
}

/// A visible row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetRow {
    pub node: FleetNode,
    /// The last of its siblings (`└─` rather than `├─`).
    pub last: bool,
    /// For a service: its tenant is the last of the ring's shown tenants.
    pub parent_last: bool,
}

/// What the filter keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    All,
    /// `tag:TAG`: tenants with exactly this tag.
    Tag(String),
    /// Tenants whose name contains this (lower case).
    Name(String),
}

impl Filter {
    fn parse(text: &str) -> Filter {
        let t = text.trim();
        if t.is_empty() {
            Filter::All
        } else if let Some(tag) = t.strip_prefix("tag:") {
            Filter::Tag(tag.trim().to_string())
        } else {
            Filter::Name(t.to_lowercase())
        }
    }

    fn keeps(&self, t: &TenantState) -> bool {
        match self {
            Filter::All => true,
            Filter::Tag(tag) => t.tags.iter().any(|x| x == tag),
            Filter::Name(n) => t.name.to_lowercase().contains(n.as_str()),
        }
    }
}

/// The tree, what is open, the filter and the cursor.
#[derive(Debug, Clone)]
pub struct FleetTree {
    /// Per tenant: its services as indices into `ReleaseState::services`, in plan order.
    pub services: Vec<Vec<usize>>,
    /// Per tenant: its ring.
    ring_of: Vec<usize>,
    ring_open: Vec<bool>,
    tenant_open: Vec<bool>,
    filter_text: String,
    filter: Filter,
    /// The visible rows.
    pub rows: Vec<FleetRow>,
    /// Index of the selected row.
    pub cursor: usize,
    /// First row shown.
    pub offset: usize,
    /// (rings, tenants, services) it was built for.
    shape: (usize, usize, usize),
    /// Width of the name column: the longest name with its tree drawing.
    pub name_w: usize,
}

impl FleetTree {
    /// Rings open, tenants closed, cursor on the first ring.
    /// `services`: the names of `ReleaseState::services`, in order.
    pub fn new<'a>(fleet: &FleetState, services: impl IntoIterator<Item = &'a str>) -> FleetTree {
        let pos: HashMap<&str, usize> = services
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        let services = fleet
            .tenants
            .iter()
            .map(|t| {
                t.services
                    .iter()
                    .filter_map(|s| pos.get(s.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut tree = FleetTree {
            services,
            ring_of: fleet.tenants.iter().map(|t| t.ring).collect(),
            ring_open: vec![true; fleet.rings.len()],
            tenant_open: vec![false; fleet.tenants.len()],
            filter_text: String::new(),
            filter: Filter::All,
            rows: Vec::new(),
            cursor: 0,
            offset: 0,
            shape: Self::shape_of(fleet, pos.len()),
            name_w: 0,
        };
        let ring_w = fleet.rings.iter().map(|r| r.name.chars().count() + 7);
        let tenant_w = fleet.tenants.iter().map(|t| t.name.chars().count() + 4);
        let service_w = fleet.tenants.iter().flat_map(|t| {
            t.services.iter().map(|s| {
                s.split_once('/')
                    .map_or(s.as_str(), |x| x.1)
                    .chars()
                    .count()
                    + 4
            })
        });
        tree.name_w = ring_w.chain(tenant_w).chain(service_w).max().unwrap_or(8);
        tree.rebuild(fleet);
        tree
    }

    fn shape_of(fleet: &FleetState, services: usize) -> (usize, usize, usize) {
        (fleet.rings.len(), fleet.tenants.len(), services)
    }

    /// Built for this fleet and this many services.
    pub fn fits(&self, fleet: &FleetState, services: usize) -> bool {
        self.shape == Self::shape_of(fleet, services)
    }

    /// A ring's tenants are shown (a filter shows its matches' rings open).
    pub fn ring_shown_open(&self, ring: usize) -> bool {
        self.filtering() || self.ring_open.get(ring).copied().unwrap_or(true)
    }

    /// A tenant's services are shown.
    pub fn is_open(&self, tenant: usize) -> bool {
        self.tenant_open.get(tenant).copied().unwrap_or(false)
    }

    pub fn filter(&self) -> &str {
        &self.filter_text
    }

    pub fn filtering(&self) -> bool {
        self.filter != Filter::All
    }

    /// The visible rows again (after the filter or what is open changed); the cursor
    /// stays on its node, or moves to the nearest shown ancestor, or to the first row.
    pub fn rebuild(&mut self, fleet: &FleetState) {
        let was = self.selected();
        let filtering = self.filtering();
        self.rows.clear();
        let mut shown: Vec<usize> = Vec::new();
        for (r, ring) in fleet.rings.iter().enumerate() {
            shown.clear();
            shown.extend(
                ring.tenants
                    .iter()
                    .copied()
                    .filter(|&t| fleet.tenants.get(t).is_some_and(|x| self.filter.keeps(x))),
            );
            if filtering && shown.is_empty() {
                continue;
            }
            self.rows.push(FleetRow {
                node: FleetNode::Ring(r),
                last: false,
                parent_last: false,
            });
            if !self.ring_shown_open(r) {
                continue;
            }
            for (k, &t) in shown.iter().enumerate() {
                let last = k + 1 == shown.len();
                self.rows.push(FleetRow {
                    node: FleetNode::Tenant(t),
                    last,
                    parent_last: false,
                });
                if !self.is_open(t) {
                    continue;
                }
                let svc = self.services.get(t).map_or(&[][..], |v| v.as_slice());
                for (j, &index) in svc.iter().enumerate() {
                    self.rows.push(FleetRow {
                        node: FleetNode::Service { tenant: t, index },
                        last: j + 1 == svc.len(),
                        parent_last: last,
                    });
                }
            }
        }
        self.cursor = was
            .and_then(|n| {
                self.ancestry(n)
                    .into_iter()
                    .flatten()
                    .find_map(|a| self.rows.iter().position(|row| row.node == a))
            })
            .unwrap_or(0)
            .min(self.rows.len().saturating_sub(1));
    }

    /// A node, its tenant and its ring (nearest first).
    fn ancestry(&self, n: FleetNode) -> [Option<FleetNode>; 3] {
        match n {
            FleetNode::Ring(_) => [Some(n), None, None],
            FleetNode::Tenant(t) => [
                Some(n),
                self.ring_of.get(t).map(|r| FleetNode::Ring(*r)),
                None,
            ],
            FleetNode::Service { tenant, .. } => [
                Some(n),
                Some(FleetNode::Tenant(tenant)),
                self.ring_of.get(tenant).map(|r| FleetNode::Ring(*r)),
            ],
        }
    }

    pub fn selected(&self) -> Option<FleetNode> {
        self.rows.get(self.cursor).map(|r| r.node)
    }

    /// The selected tenant, or the tenant of the selected service.
    pub fn selected_tenant(&self) -> Option<usize> {
        match self.selected()? {
            FleetNode::Ring(_) => None,
            FleetNode::Tenant(t) | FleetNode::Service { tenant: t, .. } => Some(t),
        }
    }

    /// The selected service (index into `ReleaseState::services`).
    pub fn selected_service(&self) -> Option<usize> {
        match self.selected()? {
            FleetNode::Service { index, .. } => Some(index),
            _ => None,
        }
    }

    /// Move the cursor by `delta` rows (clamped).
    pub fn move_by(&mut self, delta: isize) {
        if self.rows.is_empty() {
            return;
        }
        let last = self.rows.len() as isize - 1;
        self.cursor = (self.cursor as isize).saturating_add(delta).clamp(0, last) as usize;
    }

    /// Put the cursor on the row shown `row` rows below the top (a click).
    pub fn click(&mut self, row: usize) -> bool {
        let r = self.offset + row;
        if r < self.rows.len() {
            self.cursor = r;
            true
        } else {
            false
        }
    }

    /// Keep the cursor inside a window of `height` rows.
    pub fn scroll(&mut self, height: usize) {
        let h = height.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + h {
            self.offset = self.cursor + 1 - h;
        }
        self.offset = self.offset.min(self.rows.len().saturating_sub(h));
    }

    /// Collapse or expand the selected ring or tenant (on a service: close its tenant).
    pub fn toggle(&mut self, fleet: &FleetState) {
        match self.selected() {
            Some(FleetNode::Ring(r)) => {
                if let Some(o) = self.ring_open.get_mut(r) {
                    *o = !*o;
                }
            }
            Some(FleetNode::Tenant(t)) => {
                if let Some(o) = self.tenant_open.get_mut(t) {
                    *o = !*o;
                }
            }
            Some(FleetNode::Service { tenant, .. }) => {
                if let Some(o) = self.tenant_open.get_mut(tenant) {
                    *o = false;
                }
            }
            None => return,
        }
        self.rebuild(fleet);
    }

    /// Anything open: collapse everything; else expand every ring and tenant.
    pub fn toggle_all(&mut self, fleet: &FleetState) {
        let open = !(self.ring_open.iter().any(|o| *o) || self.tenant_open.iter().any(|o| *o));
        self.ring_open.iter_mut().for_each(|o| *o = open);
        self.tenant_open.iter_mut().for_each(|o| *o = open);
        self.rebuild(fleet);
    }

    pub fn set_filter(&mut self, text: &str, fleet: &FleetState) {
        self.filter_text = text.to_string();
        self.filter = Filter::parse(text);
        self.rebuild(fleet);
    }

    /// The name of the selected service, if a service is selected.
    pub fn selected_name<'a>(
        &self,
        services: &'a [std::sync::Arc<ServiceState>],
    ) -> Option<&'a str> {
        self.selected_service()
            .and_then(|i| services.get(i))
            .map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::{RingState, RingStatus, TenantStatus};

    /// Two rings: `early` (acme, blue) and `main` (corp, dyn, echo); each tenant has
    /// `api` and `web`.
    fn fleet() -> (FleetState, Vec<String>) {
        let names = ["acme", "blue", "corp", "dyn", "echo"];
        let tags = [
            vec!["tier/gold"],
            vec!["tier/gold", "region/eu"],
            vec![],
            vec!["region/eu"],
            vec![],
        ];
        let mut all = Vec::new();
        let mut tenants = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let mut services = Vec::new();
            for s in ["api", "web"] {
                let name = format!("{n}/{s}");
                all.push(name.clone());
                services.push(name);
            }
            tenants.push(TenantState {
                name: n.to_string(),
                ring: usize::from(i >= 2),
                tags: tags[i].iter().map(|t| t.to_string()).collect(),
                services,
                status: TenantStatus::Pending,
                reason: None,
                paused: false,
                flags: Default::default(),
                flags_before: None,
                counted: false,
                awaiting: None,
                frozen: None,
            });
        }
        let ring = |name: &str, tenants: Vec<usize>| RingState {
            name: name.into(),
            tenants,
            max_parallel: 1,
            bake_ms: 0,
            status: RingStatus::Pending,
            bake_until_ms: None,
        };
        let f = FleetState {
            budget: 1,
            failures: 0,
            exceeded: None,
            flags_file: None,
            rings: vec![ring("early", vec![0, 1]), ring("main", vec![2, 3, 4])],
            tenants,
        };
        (f, all)
    }

    fn shown(t: &FleetTree) -> Vec<FleetNode> {
        t.rows.iter().map(|r| r.node).collect()
    }

    use FleetNode::{Ring, Service, Tenant};

    #[test]
    fn rings_open_and_tenants_closed_at_first() {
        let (f, s) = fleet();
        let t = FleetTree::new(&f, s.iter().map(String::as_str));
        assert_eq!(
            shown(&t),
            vec![
                Ring(0),
                Tenant(0),
                Tenant(1),
                Ring(1),
                Tenant(2),
                Tenant(3),
                Tenant(4)
            ]
        );
        assert_eq!(t.services[3], vec![6, 7]);
        assert!(t.rows[2].last && !t.rows[1].last);
        assert_eq!(t.selected(), Some(Ring(0)));
        assert_eq!(t.selected_tenant(), None);
    }

    #[test]
    fn a_tenant_opens_to_its_services_and_the_cursor_follows_collapse() {
        let (f, s) = fleet();
        let mut t = FleetTree::new(&f, s.iter().map(String::as_str));
        t.move_by(2);
        assert_eq!(t.selected(), Some(Tenant(1)));
        t.toggle(&f);
        assert_eq!(
            &shown(&t)[..5],
            &[
                Ring(0),
                Tenant(0),
                Tenant(1),
                Service {
                    tenant: 1,
                    index: 2
                },
                Service {
                    tenant: 1,
                    index: 3
                }
            ]
        );
        assert!(t.rows[3].parent_last && t.rows[4].last && !t.rows[3].last);
        t.move_by(2);
        assert_eq!(t.selected_service(), Some(3));
        assert_eq!(
            t.selected_service().map(|i| s[i].as_str()),
            Some("blue/web")
        );
        assert_eq!(
            t.selected_tenant(),
            Some(1),
            "the tenant of the selected service"
        );
        // Toggling on a service closes its tenant; the cursor goes to the tenant.
        t.toggle(&f);
        assert_eq!(t.selected(), Some(Tenant(1)));
        assert_eq!(t.rows.len(), 7);
        // Closing the ring hides its tenants; the cursor goes up to the ring.
        t.move_by(-2);
        t.toggle(&f);
        assert_eq!(
            shown(&t),
            vec![Ring(0), Ring(1), Tenant(2), Tenant(3), Tenant(4)]
        );
        assert_eq!(t.selected(), Some(Ring(0)));
    }

    #[test]
    fn collapse_all_then_expand_all() {
        let (f, s) = fleet();
        let mut t = FleetTree::new(&f, s.iter().map(String::as_str));
        t.move_by(4);
        assert_eq!(t.selected(), Some(Tenant(2)));
        t.toggle_all(&f);
        assert_eq!(shown(&t), vec![Ring(0), Ring(1)]);
        assert_eq!(t.selected(), Some(Ring(1)), "the cursor's ring");
        t.toggle_all(&f);
        assert_eq!(t.rows.len(), 2 + 5 + 10);
        assert_eq!(t.selected(), Some(Ring(1)));
    }

    #[test]
    fn filter_by_name_or_tag_and_clear() {
        let (f, s) = fleet();
        let mut t = FleetTree::new(&f, s.iter().map(String::as_str));
        t.toggle_all(&f); // everything closed: a filter still shows its matches
        t.set_filter("tag:region/eu", &f);
        assert!(t.filtering());
        assert_eq!(shown(&t), vec![Ring(0), Tenant(1), Ring(1), Tenant(3)]);
        assert!(t.rows[1].last && t.rows[3].last);
        t.set_filter("CO", &f);
        assert_eq!(shown(&t), vec![Ring(1), Tenant(2)]);
        t.set_filter("tag:tier", &f);
        assert!(t.rows.is_empty(), "a tag matches whole, not a prefix");
        assert_eq!(t.selected(), None);
        t.move_by(1);
        t.set_filter("", &f);
        assert!(!t.filtering());
        assert_eq!(shown(&t), vec![Ring(0), Ring(1)]);
    }

    #[test]
    fn cursor_and_scrolling_stay_in_bounds() {
        let (f, s) = fleet();
        let mut t = FleetTree::new(&f, s.iter().map(String::as_str));
        t.toggle_all(&f);
        t.toggle_all(&f);
        assert_eq!(t.rows.len(), 17);
        t.move_by(isize::MAX);
        assert_eq!(t.cursor, 16);
        t.scroll(5);
        assert_eq!(t.offset, 12);
        t.move_by(-7);
        t.scroll(5);
        assert_eq!((t.cursor, t.offset), (9, 9));
        t.move_by(isize::MIN);
        t.scroll(5);
        assert_eq!((t.cursor, t.offset), (0, 0));
        assert!(t.click(3));
        assert_eq!(t.cursor, 3);
        assert!(!t.click(40));
        t.scroll(0);
        assert_eq!(t.offset, 3);
    }
}
