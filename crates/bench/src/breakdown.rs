//! Where an operation's time goes, read from the engine's own metrics (the same step and
//! registry timings operators scrape), recorded raw so that the medians are exact.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

pub struct Breakdown(Snapshotter);

impl Breakdown {
    /// Installs the recorder for the whole process (once).
    pub fn install() -> Result<Self> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .map_err(|_| anyhow!("a metrics recorder is installed already"))?;
        Ok(Self(snapshotter))
    }

    /// Forgets what was recorded so far: the next report covers what runs from here.
    pub fn reset(&self) {
        let _ = self.0.snapshot();
    }

    /// For the operations of `kind` since the last reset: the median of each step, and each
    /// registry query's median and count per operation; forgotten once taken.
    pub fn take(&self, kind: &str, operations: usize) -> Report {
        let mut steps = Vec::new();
        let mut step_values = BTreeMap::new();
        let mut store = Vec::new();
        for (key, _, _, value) in self.0.snapshot().into_vec() {
            let DebugValue::Histogram(values) = value else {
                continue;
            };
            let key = key.key();
            let labels: BTreeMap<_, _> = key.labels().map(|l| (l.key(), l.value())).collect();
            let mut values: Vec<f64> = values.into_iter().map(f64::from).collect();
            match key.name() {
                "tenancy_step_duration_seconds" if labels.get("kind") == Some(&kind) => {
                    step_values.insert(labels["step"].to_owned(), values.clone());
                    steps.push((labels["step"].to_owned(), median(&mut values), values.len()));
                }
                "tenancy_store_seconds" => {
                    store.push((labels["op"].to_owned(), median(&mut values), values.len()));
                }
                _ => {}
            }
        }
        let by_cost = |a: &(String, f64, usize), b: &(String, f64, usize)| {
            (b.1 * b.2 as f64).total_cmp(&(a.1 * a.2 as f64))
        };
        steps.sort_by(by_cost);
        store.sort_by(by_cost);
        Report {
            kind: kind.to_owned(),
            operations,
            steps,
            step_values,
            store,
        }
    }
}

/// Medians of steps and registry queries (name, median in seconds, how many).
pub struct Report {
    kind: String,
    operations: usize,
    steps: Vec<(String, f64, usize)>,
    /// Each step's timings in the order they were recorded, in seconds.
    step_values: BTreeMap<String, Vec<f64>>,
    store: Vec<(String, f64, usize)>,
}

impl Report {
    /// Every timing of one step, in the order the operations ran it.
    pub fn step_values(&self, name: &str) -> &[f64] {
        self.step_values.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn print(&self) {
        let Self {
            kind,
            operations,
            steps,
            store,
            ..
        } = self;
        println!("  where the time goes (p50 per {kind} step):");
        let mut total = 0.0;
        for (step, p50, _) in steps {
            total += p50;
            println!("    {step:<24} {:>8.2} ms", p50 * 1000.0);
        }
        println!("    {:<24} {:>8.2} ms", "sum of steps", total * 1000.0);
        println!("  registry queries (p50, and how many per operation):");
        let per_op = (*operations).max(1) as f64;
        for (op, p50, count) in store.iter().take(8) {
            println!(
                "    {op:<24} {:>8.2} ms x {:.1}",
                p50 * 1000.0,
                *count as f64 / per_op
            );
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
