//! The repository's copy of the spec and vectors (`spec/`) must equal the ground truth in
//! `../shared/spec/` (it is beside every CI clone), so that tests on a fresh clone test
//! against the same bytes. A missing ground truth fails the test: a check that silently
//! passes when it cannot compare would hide a drifted copy.

use std::path::Path;

#[test]
fn spec_copies_match_the_shared_ground_truth() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = repo.join("../shared/spec");
    for name in ["vectors.json", "gatewayworker-wire.md", "ops.md"] {
        let ours = std::fs::read(repo.join("spec").join(name))
            .unwrap_or_else(|e| panic!("spec/{name} missing from the repository: {e}"));
        let truth = std::fs::read(shared.join(name)).unwrap_or_else(|e| {
            panic!(
                "../shared/spec/{name} cannot be read ({e}): the ground truth must sit beside \
                 the repository ({})",
                shared.display()
            )
        });
        assert!(
            ours == truth,
            "spec/{name} differs from ../shared/spec/{name}: copy it again"
        );
    }
}

#[test]
fn every_section_of_the_vectors_is_present() {
    let doc = gatewayworker::testing::vectors::document();
    let counts = doc["section_counts"].as_object().expect("section_counts");
    for (name, count) in counts {
        let section = gatewayworker::testing::vectors::section(name);
        assert_eq!(
            section.len() as u64,
            count.as_u64().unwrap(),
            "section {name}"
        );
    }
}
