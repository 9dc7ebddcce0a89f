//! The lab's index page: the committed `docs/lab/index.html` is what `socialnet lab index` makes
//! of the committed results, and in Debian's Chromium, headless (`tests/browser/lab_page.mjs`),
//! it loads from disk and every plot on it renders.

use std::path::Path;
use std::process::Command;

use crate::helpers::browser_script;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_committed_page_is_what_the_committed_results_give() {
    let output = Command::new(env!("CARGO_BIN_EXE_socialnet"))
        .current_dir(ROOT)
        .args(["lab", "index", "--dir", "docs/lab", "--check"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_plot_of_the_page_renders_in_a_real_browser() {
    let page = Path::new(ROOT).join("docs/lab/index.html");
    let result = browser_script("lab_page.mjs", &[page.to_str().unwrap()]);
    let images = std::fs::read_to_string(&page)
        .unwrap()
        .matches("<img ")
        .count();
    assert_eq!(
        result["plots"].as_u64().unwrap() as usize,
        images,
        "{result}"
    );
    assert!(images > 60, "{result}");
}
