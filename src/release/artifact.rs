//! The artifact identity of a run: what "the same release" means when a lifecycle gate
//! compares a production deploy with the staging runs before it.
//!
//! It is the SHA-256 of the release file's content and of the `--set` values, each as
//! written on the command line: a value read with `env:VAR` counts by the variable's name
//! only (its value is a secret and may differ between environments). The environment
//! itself is not part of it: staging and production deploy the same artifact.

use sha2::{Digest, Sha256};

use super::vars::{SetArg, normalized};

/// The identity of a release file plus its `--set` values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    /// Hex SHA-256 of `file_sha256` and the normalized `sets`; equal ids, same artifact.
    pub id: String,
    /// Hex SHA-256 of the release file's bytes.
    pub file_sha256: String,
    /// The `--set` values, last of each name, sorted by name (`env:VAR` as written).
    pub sets: Vec<SetArg>,
}

impl Artifact {
    /// The identity of `file` (its bytes) read with `sets`.
    pub fn new(file: &[u8], sets: &[SetArg]) -> Artifact {
        let file_sha256 = hex(&Sha256::digest(file));
        let sets = normalized(sets);
        let mut h = Sha256::new();
        h.update(file_sha256.as_bytes());
        for s in &sets {
            // Length-prefixed, so no two different lists hash alike.
            for part in [&s.name, &s.value] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        Artifact {
            id: hex(&h.finalize()),
            file_sha256,
            sets,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SetArg {
        s.parse().unwrap()
    }

    #[test]
    fn same_file_and_sets_are_the_same_artifact_whatever_the_order() {
        let a = Artifact::new(b"x", &[set("a=1"), set("b=2")]);
        let b = Artifact::new(b"x", &[set("b=2"), set("a=0"), set("a=1")]);
        assert_eq!(a, b);
        assert_ne!(a.id, Artifact::new(b"x", &[set("a=1")]).id);
        assert_ne!(a.id, Artifact::new(b"y", &[set("a=1"), set("b=2")]).id);
        // An env: value counts by name: the secret is not in it.
        let e = Artifact::new(b"x", &[set("token=env:API_TOKEN")]);
        assert_eq!(e.sets[0].value, "env:API_TOKEN");
    }
}
