// Hand examples: pieces of lengths 3 and 5 under each policy; masks checked against the
// visibility rule cell by cell.
// One-range masks are ordinary inputs here, not a mistaken `vec![a..b]`.
#![allow(clippy::single_range_in_vec_init)]

use super::*;

fn req(sink: Option<Vec<u32>>) -> Request {
    Request { sink, pieces: vec![vec![10, 11, 12], vec![20, 21, 22, 23, 24]], query: vec![30, 31] }
}

fn cfg(positions: PositionPolicy) -> LayoutConfig {
    LayoutConfig { positions, ..LayoutConfig::new(64) }
}

fn piece_pos(l: &Layout, p: usize) -> Vec<i32> {
    l.positions(l.piece(p))
}

#[test]
fn positions_without_sink() {
    // Lmax = 5. Even: floor(i * 5 / 3) = 0, 1, 3.
    let cases = [
        (PositionPolicy::Even, vec![0, 1, 3], vec![0, 1, 2, 3, 4], vec![5, 6]),
        (PositionPolicy::Left, vec![0, 1, 2], vec![0, 1, 2, 3, 4], vec![5, 6]),
        (PositionPolicy::Right, vec![2, 3, 4], vec![0, 1, 2, 3, 4], vec![5, 6]),
        (PositionPolicy::Sequential, vec![0, 1, 2], vec![3, 4, 5, 6, 7], vec![8, 9]),
    ];
    for (policy, p0, p1, q) in cases {
        let l = Layout::build(&req(None), &cfg(policy)).unwrap();
        assert_eq!(piece_pos(&l, 0), p0, "{policy}");
        assert_eq!(piece_pos(&l, 1), p1, "{policy}");
        assert_eq!(l.positions(l.query()), q, "{policy}");
        assert_eq!(l.generated_pos(0), q[1] as usize + 1, "{policy}");
        assert_eq!((l.sink(), l.piece(0), l.piece(1), l.query()), (0..0, 0..3, 3..8, 8..10));
    }
}

#[test]
fn positions_with_sink() {
    // n = 2: everything shifts by 2; the sink is 0, 1.
    let l = Layout::build(&req(Some(vec![1, 2])), &cfg(PositionPolicy::Even)).unwrap();
    assert_eq!(l.positions(l.sink()), [0, 1]);
    assert_eq!(piece_pos(&l, 0), [2, 3, 5]);
    assert_eq!(piece_pos(&l, 1), [2, 3, 4, 5, 6]);
    assert_eq!(l.positions(l.query()), [7, 8]);
    assert_eq!(l.tokens(l.piece(0)), [10, 11, 12]);
    let kinds: Vec<_> = l.cells().iter().map(|c| (c.kind, c.piece)).collect();
    assert_eq!(kinds[1], (CellKind::Sink, None));
    assert_eq!(kinds[2], (CellKind::Piece, Some(0)));
    assert_eq!(kinds[6], (CellKind::Piece, Some(1)));
    assert_eq!(kinds[11], (CellKind::Query, None));
}

#[test]
fn even_stretch_of_lengths_2_and_7() {
    // floor(i * 7 / 2): 0, 3.
    let r = Request { sink: None, pieces: vec![vec![1; 2], vec![2; 7]], query: vec![3] };
    let l = Layout::build(&r, &cfg(PositionPolicy::Even)).unwrap();
    assert_eq!(piece_pos(&l, 0), [0, 3]);
    assert_eq!(l.positions(l.query()), [7]);
}

#[test]
fn one_piece_is_ordinary_causal() {
    let r = Request { sink: Some(vec![1, 2]), pieces: vec![vec![3, 4, 5]], query: vec![6, 7] };
    for policy in [
        PositionPolicy::Even,
        PositionPolicy::Left,
        PositionPolicy::Right,
        PositionPolicy::Sequential,
    ] {
        let l = Layout::build(&r, &cfg(policy)).unwrap();
        let pos: Vec<i32> = l.cells().iter().map(|c| c.pos).collect();
        assert_eq!(pos, [0, 1, 2, 3, 4, 5, 6], "{policy}");
        for row in 0..l.n_cells() + 3 {
            for key in 0..l.n_cells() + 3 {
                assert_eq!(l.visible(row, key), key <= row, "{policy} {row} {key}");
            }
        }
        let m = l.attn_mask_for_query(None).unwrap();
        assert_eq!(m.offsets, [0, 1, 2]);
        assert_eq!(m.ranges, [0..6, 0..7]);
        let m = l.attn_mask_for_piece(0);
        assert_eq!(m.ranges, [0..3, 0..4, 0..5]);
    }
}

/// Every row of `m` (rows at cells `first..`) sees exactly the cells `want(row, key)` allows.
fn assert_mask(m: &MaskRanges, first: usize, n_cells: usize, want: impl Fn(usize, usize) -> bool) {
    assert!(m.as_mask().validate(m.n_rows(), n_cells).is_ok());
    for i in 0..m.n_rows() {
        let row = first + i;
        let got: Vec<bool> =
            (0..n_cells).map(|c| m.as_mask().row(i).iter().any(|r| r.contains(&c))).collect();
        let exp: Vec<bool> = (0..n_cells).map(|c| want(row, c)).collect();
        assert_eq!(got, exp, "row at cell {row}");
    }
}

#[test]
fn masks_follow_visibility() {
    let l = Layout::build(&req(Some(vec![1, 2])), &cfg(PositionPolicy::Even)).unwrap();
    // cells: sink 0..2, piece 0 2..5, piece 1 5..10, query 10..12
    let m = l.attn_mask_for_piece(1);
    assert_eq!(m.offsets, [0, 2, 4, 6, 8, 10]);
    assert_eq!(&m.ranges[..4], &[0..2, 5..6, 0..2, 5..7]);
    assert_mask(&m, 5, 12, |r, k| l.visible(r, k));
    let m = l.attn_mask_for_piece(0);
    assert_eq!(m.ranges, [0..3, 0..4, 0..5]); // sink and piece 0 touch: merged
    assert_mask(&m, 2, 12, |r, k| l.visible(r, k));
    let m = l.attn_mask_for_query(None).unwrap();
    assert_eq!(m.ranges, [0..11, 0..12]);
    assert_mask(&m, 10, 12, |r, k| l.visible(r, k));
    // Drop piece 0: sink, then piece 1 + query.
    let m = l.attn_mask_for_query(Some(&[false, true])).unwrap();
    assert_eq!(m.ranges, [0..2, 5..11, 0..2, 5..12]);
    assert_mask(&m, 10, 12, |r, k| l.visible(r, k) && !(2..5).contains(&k));
    // Drop piece 1: piece 1's cells vanish, the query follows.
    let m = l.attn_mask_for_query(Some(&[true, false])).unwrap();
    assert_eq!(m.ranges, [0..5, 10..11, 0..5, 10..12]);
    // Generated tokens after the query.
    let m = l.attn_mask_for_rows(12, 2, None).unwrap();
    assert_eq!(m.ranges, [0..13, 0..14]);
    assert!(l.attn_mask_for_rows(9, 1, None).is_err());
    assert!(l.attn_mask_for_rows(63, 2, None).is_err());
    assert!(l.attn_mask_for_query(Some(&[true])).is_err());
}

#[test]
fn bos_policies() {
    let mut c = cfg(PositionPolicy::Left);
    c.bos = BosPolicy::Shared;
    assert_eq!(
        Layout::build(&req(None), &c).unwrap_err(),
        LayoutError::NoBosToken(BosPolicy::Shared)
    );
    c.bos_token = Some(99);
    let l = Layout::build(&req(Some(vec![1])), &c).unwrap();
    assert_eq!(l.tokens(l.sink()), [99, 1]);
    assert_eq!(l.positions(l.sink()), [0, 1]);
    assert_eq!(piece_pos(&l, 0), [2, 3, 4]);
    assert_eq!((l.n_bos(), l.bos_policy()), (1, BosPolicy::Shared));

    c.bos = BosPolicy::PerPiece;
    let l = Layout::build(&req(None), &c).unwrap();
    assert_eq!(l.tokens(l.piece(0)), [99, 10, 11, 12]);
    assert_eq!(l.tokens(l.piece(1)), [99, 20, 21, 22, 23, 24]);
    assert_eq!(piece_pos(&l, 1), [0, 1, 2, 3, 4, 5]);
    assert_eq!((l.l_max(), l.n_bos()), (6, 2));
    assert_eq!(l.positions(l.query()), [6, 7]);
    assert_eq!(l.attn_mask_for_query(None).unwrap().ranges, [0..11, 0..12]);
    // PCW: the query sees piece 0's BOS (cell 0) but not piece 1's (cell 4).
    c.hide_extra_bos = true;
    let l = Layout::build(&req(None), &c).unwrap();
    let m = l.attn_mask_for_query(None).unwrap();
    assert_eq!(m.ranges, [0..4, 5..11, 0..4, 5..12]);
    assert!(!l.visible(10, 4) && l.visible(10, 0) && l.visible(5, 4));
    assert_eq!(BosPolicy::PerPiece.to_string(), "per-piece");
}

#[test]
fn errors() {
    let c = cfg(PositionPolicy::Even);
    let mut r = req(None);
    r.pieces[1].clear();
    assert_eq!(Layout::build(&r, &c).unwrap_err(), LayoutError::EmptyPiece(1));
    let r = Request { query: vec![], ..req(None) };
    assert_eq!(Layout::build(&r, &c).unwrap_err(), LayoutError::EmptyQuery);
    let r = Request { pieces: vec![], ..req(None) };
    assert_eq!(Layout::build(&r, &c).unwrap_err(), LayoutError::NoPieces);
    // 10 cells
    assert!(Layout::build(&req(None), &LayoutConfig::new(10)).is_ok());
    assert_eq!(
        Layout::build(&req(None), &LayoutConfig::new(9)).unwrap_err(),
        LayoutError::TooManyCells { need: 10, n_ctx: 9 }
    );
    // Even: last position 6 needs n_ctx_train >= 7; Sequential: 9 needs 10.
    let c = LayoutConfig { n_ctx_train: 7, ..LayoutConfig::new(64) };
    assert!(Layout::build(&req(None), &c).is_ok());
    let c = LayoutConfig { n_ctx_train: 6, ..c };
    assert!(matches!(
        Layout::build(&req(None), &c),
        Err(LayoutError::PositionOverflow { max_pos: 6, .. })
    ));
    let c = LayoutConfig { n_ctx_train: 9, positions: PositionPolicy::Sequential, ..c };
    assert!(Layout::build(&req(None), &c).is_err());
}

#[test]
fn keep_set_masks() {
    use crate::selection::{select_pieces, Pooling};
    let l = Layout::build(&req(Some(vec![1, 2])), &cfg(PositionPolicy::Even)).unwrap();
    // 2 query rows, 2 heads, 2 pieces: head 0 prefers piece 1, head 1 piece 0.
    let scores = [0.1, 0.9, 0.8, 0.2, /* token 1 */ 0.1, 0.9, 0.8, 0.2];
    let sets = select_pieces(&scores, 2, 2, 2, Pooling::None, 1).unwrap();
    let m = l.attn_mask_for_keep_sets(10, 2, &sets).unwrap();
    assert_eq!(m.n_head, Some(2));
    assert_eq!(m.n_rows(), 2);
    assert_eq!(m.offsets, [0, 2, 4, 6, 8]);
    assert_eq!(m.ranges, [0..2, 5..11, 0..5, 10..11, 0..2, 5..12, 0..5, 10..12]);
    assert!(m.as_mask().validate(2, 12).is_ok());
    assert_eq!(&*m.as_mask().row_head(1, 1), &[0..5, 10..12]);
    // Pooled over heads: one entry per row, equal to the plain keep-set mask.
    let sets = select_pieces(&scores, 2, 2, 2, Pooling::HeadsTokens, 1).unwrap();
    let m = l.attn_mask_for_keep_sets(10, 2, &sets).unwrap();
    assert_eq!(m.n_head, None);
    assert_eq!(m, l.attn_mask_for_query(Some(sets.get(0, 0))).unwrap());
    assert!(l.attn_mask_for_keep_sets(10, 1, &sets).is_err());
    assert!(l.attn_mask_for_keep_sets(9, 2, &sets).is_err());
}
