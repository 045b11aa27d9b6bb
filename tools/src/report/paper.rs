//! The paper's headline numbers (PAPER.md §6: Llama-3.1-8B, 8K context, no sink, no
//! selection; marked there as secondary, from summaries of the paper) and which of our tasks
//! each column stands for, so the report can print them beside ours.

use crate::eval::tasks::TaskKind;

/// P values of the paper's table.
pub const PAPER_P: [usize; 4] = [1, 8, 16, 64];

/// One row of PAPER.md §6's table: P, LM perplexity, ICL %, RAG %, synthetic recall %.
pub struct PaperRow {
    pub p: usize,
    pub lm_ppl: f64,
    pub icl: f64,
    pub rag: f64,
    pub synthetic: f64,
}

pub const PAPER_ROWS: [PaperRow; 4] = [
    PaperRow { p: 1, lm_ppl: 5.35, icl: 66.0, rag: 60.3, synthetic: 99.5 },
    PaperRow { p: 8, lm_ppl: 6.92, icl: 44.4, rag: 48.8, synthetic: 41.0 },
    PaperRow { p: 16, lm_ppl: 7.97, icl: 34.0, rag: 41.8, synthetic: 2.2 },
    PaperRow { p: 64, lm_ppl: 10.46, icl: 10.8, rag: 33.0, synthetic: 0.0 },
];

/// The paper's number for `task` at `p` (no sink, no selection), if the table has that P.
/// Needle and kv both stand for the paper's "synthetic" column.
pub fn paper_value(task: TaskKind, p: usize) -> Option<f64> {
    let r = PAPER_ROWS.iter().find(|r| r.p == p)?;
    Some(match task {
        TaskKind::Lm => r.lm_ppl,
        TaskKind::Icl => r.icl,
        TaskKind::Rag => r.rag,
        TaskKind::Needle | TaskKind::Kv => r.synthetic,
    })
}

/// The paper's column name for `task`.
pub fn paper_column(task: TaskKind) -> &'static str {
    match task {
        TaskKind::Lm => "LM ppl",
        TaskKind::Icl => "ICL %",
        TaskKind::Rag => "RAG %",
        TaskKind::Needle | TaskKind::Kv => "synthetic %",
    }
}

/// The paper's table as markdown.
pub fn paper_table() -> String {
    let mut s =
        String::from("| P | LM ppl | ICL % | RAG % | synthetic % |\n|---|---|---|---|---|\n");
    for r in &PAPER_ROWS {
        s.push_str(&format!(
            "| {} | {:.2} | {:.1} | {:.1} | {:.1} |\n",
            r.p, r.lm_ppl, r.icl, r.rag, r.synthetic
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_values_by_task() {
        assert_eq!(paper_value(TaskKind::Lm, 8), Some(6.92));
        assert_eq!(paper_value(TaskKind::Kv, 16), Some(2.2));
        assert_eq!(paper_value(TaskKind::Needle, 16), Some(2.2));
        assert_eq!(paper_value(TaskKind::Rag, 2), None);
        assert!(paper_table().contains("| 64 | 10.46 | 10.8 | 33.0 | 0.0 |"));
    }
}
