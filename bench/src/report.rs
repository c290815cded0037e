//! Prints result tables and rewrites this benchmark's section of BENCHMARKS.md, leaving the
//! other sections as they were (each section sits between `<!-- bench:NAME -->` markers).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

static DRY_RUN: AtomicBool = AtomicBool::new(false);

/// Smoke runs print their tables but leave BENCHMARKS.md alone.
pub fn set_dry_run(dry: bool) {
    DRY_RUN.store(dry, Ordering::Relaxed);
}

/// One benchmark's results.
#[derive(Debug, Default)]
pub struct Section {
    /// Marker name.
    pub name: &'static str,
    /// Heading.
    pub title: &'static str,
    /// Command that produced it.
    pub command: String,
    /// Text before the table (method).
    pub intro: String,
    /// Table header.
    pub header: Vec<&'static str>,
    /// Table rows.
    pub rows: Vec<Vec<String>>,
    /// Text after the table (verdicts, what limits a missed goal).
    pub notes: Vec<String>,
}

impl Section {
    /// A markdown table row.
    pub fn row(&mut self, cells: &[&dyn std::fmt::Display]) {
        self.rows.push(cells.iter().map(|c| c.to_string()).collect());
    }

    fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n", self.title);
        out.push_str(&format!("Command: `{}`\n\n", self.command));
        if !self.intro.is_empty() {
            out.push_str(&self.intro);
            out.push_str("\n\n");
        }
        out.push_str(&format!("| {} |\n", self.header.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        out
    }

    /// Prints the table and rewrites the section in BENCHMARKS.md.
    pub fn publish(&self) {
        let md = self.markdown();
        println!("\n{md}");
        if DRY_RUN.load(Ordering::Relaxed) {
            return;
        }
        let path = benchmarks_md();
        let old = std::fs::read_to_string(&path).unwrap_or_else(|_| HEADER.to_owned());
        let (start, end) =
            (format!("<!-- bench:{} -->", self.name), format!("<!-- /bench:{} -->", self.name));
        let block = format!("{start}\n{md}{end}");
        let new = match (old.find(&start), old.find(&end)) {
            (Some(a), Some(b)) if a < b => format!("{}{}{}", &old[..a], block, &old[b + end.len()..]),
            _ => format!("{}\n{}\n", old.trim_end(), block),
        };
        std::fs::write(&path, new).expect("write BENCHMARKS.md");
        println!("(updated {})", path.display());
    }
}

const HEADER: &str = "# Benchmarks\n\nEvery figure is produced by `cargo run --release -p switchboard-bench -- <name>`\n(`all` runs every one). Figures are medians of repeated runs with their spread, and\ncomparisons are ratios measured side by side in the same run: the machine (2 cores) is shared\nand noisy, so absolute times vary between runs.\n";

fn benchmarks_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md")
}
