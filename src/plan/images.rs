//! Image pinning as `cutover plan` shows it, offline: for each ECS service, the image as
//! the release writes it, the policy's `[images] pin` mode, and what the start will do
//! with it (the same rule as `platform::ecs::images::resolve`, which asks ECR): an image
//! written by digest stays (its digest is known now), an ECR tag is resolved to its
//! digest at the start, a tag outside ECR is deployed by tag (`ecr-only`) or refuses the
//! run (`required`). With `off`, images are deployed as written.

use std::fmt::Write;

use serde::Serialize;

use crate::platform::ecs::images::ImageRef;
use crate::policy::scan::PinMode;
use crate::release::Release;

/// One ECS service's image in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedImage {
    #[serde(skip)]
    pub service: String,
    /// The image as the release writes it.
    pub image: String,
    /// `[images] pin`: `required`, `ecr-only` or `off`.
    pub mode: PinMode,
    /// The digest (`sha256:…`) when the release writes the image by digest, else `null`
    /// (a tag's digest is known only at the start).
    pub digest: Option<String>,
    /// What the start does with it: `by digest`, `resolved at start`, `deployed by tag`,
    /// `refused at start` or `as written` (pinning off).
    pub at_start: &'static str,
}

/// Every ECS service's image of `release` under `mode`, in the release's order.
pub fn planned_images(release: &Release, mode: PinMode) -> Vec<PlannedImage> {
    release
        .services
        .iter()
        .filter_map(|s| {
            let image = s.ecs.as_ref()?.image.clone();
            let r = ImageRef::parse(&image);
            let at_start = if mode == PinMode::Off {
                "as written"
            } else if r.digest.is_some() {
                "by digest"
            } else if r.ecr().is_some() {
                "resolved at start"
            } else if mode == PinMode::Required {
                "refused at start"
            } else {
                "deployed by tag"
            };
            Some(PlannedImage {
                service: s.name.clone(),
                image,
                mode,
                digest: r.digest,
                at_start,
            })
        })
        .collect()
}

/// The `images` section of `cutover plan` (nothing without ECS images or with pinning off).
pub fn render_images_text(images: &[PlannedImage]) -> String {
    let mut out = String::new();
    let Some(mode) = images.first().map(|i| i.mode) else {
        return out;
    };
    if mode == PinMode::Off {
        return out;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "images ([images] pin = \"{}\")", mode.as_str());
    let w = images
        .iter()
        .map(|i| i.service.chars().count())
        .max()
        .unwrap_or(0);
    for i in images {
        let how = match (i.at_start, &i.digest) {
            ("by digest", Some(d)) => format!("by digest {d}"),
            ("deployed by tag", _) => {
                "deployed by tag (not an ECR image: cutover cannot resolve it)".into()
            }
            ("refused at start", _) => {
                "refused at start: a tag outside ECR under pin = \"required\"; write it by digest"
                    .into()
            }
            (other, _) => other.to_string(),
        };
        let _ = writeln!(out, "  {:<w$}  {} → {how}", i.service, i.image);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(images: &[&str]) -> Release {
        let mut text = String::from("[release]\nname = \"r\"\nplatform = \"ecs\"\n");
        for (n, image) in images.iter().enumerate() {
            text.push_str(&format!("\n[[service]]\nname = \"s{n}\"\nstrategy = \"rolling\"\nrolling = {{ batch = 1, max_unavailable = 0 }}\n[service.ecs]\ncluster = \"prod\"\nservice = \"s{n}\"\ncontainer = \"app\"\nimage = \"{image}\"\n"));
        }
        crate::release::load_test_text(&text)
            .unwrap_or_else(|d| panic!("{d:?}\n{text}"))
            .release
    }

    const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api:v2";
    const DIGEST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const HUB: &str = "docker.io/library/nginx:1.27";

    #[test]
    fn each_image_says_what_the_start_does_with_it() {
        let r = release(&[ECR, DIGEST, HUB]);
        let got: Vec<(&str, Option<String>)> = planned_images(&r, PinMode::EcrOnly)
            .iter()
            .map(|i| (i.at_start, i.digest.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("resolved at start", None),
                (
                    "by digest",
                    Some(
                        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                            .into()
                    )
                ),
                ("deployed by tag", None),
            ]
        );
        let required: Vec<&str> = planned_images(&r, PinMode::Required)
            .iter()
            .map(|i| i.at_start)
            .collect();
        assert_eq!(
            required,
            ["resolved at start", "by digest", "refused at start"]
        );
        let text = render_images_text(&planned_images(&r, PinMode::EcrOnly));
        assert!(
            text.contains(&format!("  s0  {ECR} → resolved at start\n")),
            "{text}"
        );
        assert!(
            text.starts_with("\nimages ([images] pin = \"ecr-only\")\n"),
            "{text}"
        );
        assert_eq!(render_images_text(&planned_images(&r, PinMode::Off)), "");
    }
}
