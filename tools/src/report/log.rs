//! The sweep log (results/report/sweep.json): what `weft report` ran — per model and task the
//! configuration, the wall time of the run and the machine's load before and after — so the
//! report states how long the sweep took and under what load, also after `--render-only`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One (model, task) run of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    pub model: String,
    pub task: String,
    pub n: usize,
    pub ps: Vec<usize>,
    pub sinks: Vec<bool>,
    pub selects: Vec<usize>,
    /// Wall seconds of this invocation's run (model load, example building, the examples
    /// not already in the results file, reports). 0 when everything was resumed.
    pub wall_s: f64,
    /// Sum of the per-example seconds in the results file (the compute of the whole sweep,
    /// across resumed invocations).
    pub example_s: f64,
    /// 1-minute load average when the run started and ended (/proc/loadavg).
    pub load_start: Option<f64>,
    pub load_end: Option<f64>,
    /// UTC start time, seconds since the epoch.
    pub started: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepLog {
    pub threads: usize,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    pub runs: Vec<TaskRun>,
}

/// The 1-minute load average, where the system says (Linux).
pub fn load_avg() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

impl SweepLog {
    pub fn load(path: &Path) -> Result<SweepLog> {
        if !path.exists() {
            return Ok(SweepLog::default());
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Records a run, replacing an earlier record of the same model and task (a resumed run
    /// keeps the larger wall time: the one that did the work).
    pub fn record(&mut self, run: TaskRun) {
        match self.runs.iter_mut().find(|r| r.model == run.model && r.task == run.task) {
            Some(old) => {
                let wall = old.wall_s.max(run.wall_s);
                let (ls, le, st) = if run.wall_s >= old.wall_s {
                    (run.load_start, run.load_end, run.started)
                } else {
                    (old.load_start, old.load_end, old.started)
                };
                *old = TaskRun { wall_s: wall, load_start: ls, load_end: le, started: st, ..run };
            }
            None => self.runs.push(run),
        }
    }

    /// Markdown: one row per run, and the totals.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} worker threads on a machine with {} logical CPUs, shared with other jobs (the \
             load column is the 1-minute load average before → after each run; a load above \
             the CPU count means the sweep got only part of the machine, and its times are \
             that much longer than on an idle one).\n\n",
            self.threads, self.cpus
        );
        s.push_str(
            "| model | task | n | P | sink | select | wall time | example time (sum) | load |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
        let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.1}"));
        for r in &self.runs {
            let sinks: Vec<&str> = r.sinks.iter().map(|&b| if b { "on" } else { "off" }).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} → {} |",
                r.model,
                r.task,
                r.n,
                list(&r.ps),
                sinks.join(","),
                list(&r.selects),
                minutes(r.wall_s),
                minutes(r.example_s),
                load(r.load_start),
                load(r.load_end)
            );
        }
        let wall: f64 = self.runs.iter().map(|r| r.wall_s).sum();
        let ex: f64 = self.runs.iter().map(|r| r.example_s).sum();
        let _ =
            writeln!(s, "\n**Total: {} wall, {} of example compute.**", minutes(wall), minutes(ex));
        s
    }
}

/// "12.3 min" or "45 s".
pub fn minutes(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.1} min", secs / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(model: &str, wall: f64) -> TaskRun {
        TaskRun {
            model: model.into(),
            task: "icl".into(),
            n: 4,
            ps: vec![1, 2, 4],
            sinks: vec![false, true],
            selects: vec![0, 2],
            wall_s: wall,
            example_s: 100.0,
            load_start: Some(2.5),
            load_end: None,
            started: 0,
        }
    }

    #[test]
    fn record_keeps_the_working_run_and_renders() {
        let mut log = SweepLog { threads: 2, cpus: 2, runs: vec![] };
        log.record(run("a", 300.0));
        log.record(run("a", 0.0)); // a fully resumed re-run
        log.record(run("b", 30.0));
        assert_eq!(log.runs.len(), 2);
        assert_eq!(log.runs[0].wall_s, 300.0);
        let md = log.markdown();
        assert!(
            md.contains("| a | icl | 4 | 1,2,4 | off,on | 0,2 | 5.0 min | 100 s | 2.5 → ? |"),
            "{md}"
        );
        assert!(md.contains("Total: 5.5 min wall"), "{md}");
        let dir = std::env::temp_dir().join(format!("weft-log-{}", std::process::id()));
        let path = dir.join("sweep.json");
        log.save(&path).unwrap();
        assert_eq!(SweepLog::load(&path).unwrap(), log);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
