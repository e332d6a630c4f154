//! Waves by list scheduling over `depends_on`, at most `max_parallel` services at once.

use std::collections::HashMap;

use crate::release::Release;

/// Waves by list scheduling: a service is ready once all its dependencies are in earlier
/// waves; each wave takes at most `max_parallel` ready services, those heading the longest
/// chain of dependents first, then in file order. Services in a cycle (refused by
/// validation) are left out.
pub fn waves(release: &Release) -> Vec<Vec<usize>> {
    let n = release.services.len();
    let index: HashMap<&str, usize> = release
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = release
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .filter(|d| *d != i)
                .collect()
        })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    // Longest chain of dependents below each service (iteratively, in reverse topological order).
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut topo = Vec::with_capacity(n);
    let mut queue: Vec<usize> = (0..n).filter(|i| remaining[*i] == 0).collect();
    while let Some(i) = queue.pop() {
        topo.push(i);
        for &m in &dependents[i] {
            remaining[m] -= 1;
            if remaining[m] == 0 {
                queue.push(m);
            }
        }
    }
    let mut height = vec![0usize; n];
    for &i in topo.iter().rev() {
        height[i] = dependents[i]
            .iter()
            .map(|m| height[*m] + 1)
            .max()
            .unwrap_or(0);
    }
    let in_dag: Vec<bool> = {
        let mut v = vec![false; n];
        for &i in &topo {
            v[i] = true;
        }
        v
    };
    let max_parallel = release.release.max_parallel.max(1) as usize;
    let mut placed = vec![false; n];
    let mut waves = Vec::new();
    let mut left = topo.len();
    while left > 0 {
        let mut ready: Vec<usize> = (0..n)
            .filter(|&i| in_dag[i] && !placed[i] && deps[i].iter().all(|d| placed[*d]))
            .collect();
        ready.sort_by_key(|&i| (std::cmp::Reverse(height[i]), i));
        ready.truncate(max_parallel);
        for &i in &ready {
            placed[i] = true;
        }
        left -= ready.len();
        ready.sort_unstable();
        waves.push(ready);
    }
    waves
}
