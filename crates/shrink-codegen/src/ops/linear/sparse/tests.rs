//! The sparse kernel against a dense f64 sum computed as the interpreter does (every term,
//! zeros included, so `0 · inf = NaN`; rounded once) and against the dense tiles (the same f32
//! sums: equal values for finite activations), on every code path (AVX-512 and AVX2 machine
//! code where the host has them, 128-bit IR, the loop-language fallback), with and without
//! fused multiply-adds, at batches 1, 2, 7, 8, 33, shapes off the 16-column blocks, densities from
//! none to all zeros, with the ops' epilogues and non-finite activations; and which kernel the
//! cost model picks.
use super::{Layout, chosen};
use crate::loops::emit::Wide;
use crate::ops::lower_node;
use crate::ops::op_testing::{In, f32s, run_node_as, run_node_split, run_node_traced, values};
use shrink_ir::DType;
use shrink_ir::op::{Fused, Linear, Op, Unary};
use std::cell::Cell;

thread_local! {
    /// Overrides the cost model's choice in this thread (Some(true): sparse, Some(false): the
    /// tiles), so the tests can run either kernel on any weight.
    pub(super) static FORCE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// A change to the host's ISA facts (to run a lesser target's code path here).
type Tweak = fn(&mut crate::loops::emit::IsaFacts);

/// The code paths, by the ISA facts that select them, with fused multiply-adds where the host
/// has them: the widest, the AVX2 machine code (also on an AVX-512 host), the 128-bit IR and
/// the loop language.
fn paths() -> Vec<(&'static str, Tweak)> {
    let mut p: Vec<(&'static str, Tweak)> = vec![("widest", |_| {})];
    if host_avx2() {
        p.push(("ymm machine code", |f| f.float_wide = Some(Wide::YmmVex)));
    }
    p.push(("128-bit IR", |f| f.float_wide = None));
    p.push(("loop language", |f| f.simd = false));
    p
}

/// The same paths without fused multiply-adds: they must all give the same bits.
fn unfused() -> Vec<(&'static str, Tweak)> {
    let mut p: Vec<(&'static str, Tweak)> = vec![("widest, no fma", |f| f.fma = false)];
    if host_avx2() {
        p.push(("ymm machine code, no fma", |f| {
            f.fma = false;
            f.float_wide = Some(Wide::YmmVex)
        }));
    }
    p.push(("128-bit IR, no fma", |f| {
        f.fma = false;
        f.float_wide = None
    }));
    p.push(("loop language", |f| f.simd = false));
    p
}

/// Whether the host runs the ymm machine code (AVX2 and FMA3); a note when it does not.
fn host_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    let has =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let has = false;
    if !has {
        eprintln!("note: this host has no AVX2 + FMA3: the ymm sparse kernel is not run");
    }
    has
}

/// `values(k·n)` with about `zeros` of them (a fraction) set to exactly 0 at scattered places.
fn pruned(k: usize, n: usize, zeros: f64, seed: u64) -> Vec<f32> {
    let mut w = values(k * n, seed);
    let cut = (zeros * 1000.0).round() as u64;
    for (f, v) in w.iter_mut().enumerate() {
        let h = (f as u64 ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        if h % 1000 < cut {
            *v = 0.0;
        }
    }
    w
}

/// Runs `op` with `force` deciding the kernel and `tweak` the path; the f32 output.
fn run(op: &Op, ins: Vec<Option<In>>, out: &[usize], force: bool, tweak: Tweak) -> Vec<f32> {
    FORCE.with(|f| f.set(Some(force)));
    let r = run_node_as(
        |bld, cx| lower_node(bld, op, cx),
        &ins,
        &[(DType::F32, out)],
        tweak,
    );
    FORCE.with(|f| f.set(None));
    let (code, outs) = r.unwrap();
    assert_eq!(code, 0);
    f32s(&outs[0])
}

fn matmul_inputs(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<Option<In>> {
    vec![
        Some(In::f32s(&[m, k], x)),
        Some(In::f32s(&[k, n], w).constant()),
    ]
}

/// The dense product as the interpreter computes it: every term in f64 (zeros too), with each
/// output's Σ|terms| (the scale of an f32 sum's rounding error).
fn dense_f64(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut mag) = (vec![], vec![]);
    for i in 0..m {
        for j in 0..n {
            let terms = (0..k).map(|p| x[i * k + p] as f64 * w[p * n + j] as f64);
            y.push(terms.clone().sum());
            mag.push(terms.map(f64::abs).sum());
        }
    }
    (y, mag)
}

/// `got` is `want` (f64) within the rounding bound of a sequential f32 sum of `k` terms, or of
/// the same class when not finite (NaN for NaN, the same infinity).
fn assert_close(got: &[f32], want: &[f64], mag: &[f64], k: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (f, ((&g, &w), &s)) in got.iter().zip(want).zip(mag).enumerate() {
        if !w.is_finite() || !s.is_finite() {
            let same = (w.is_nan() && g.is_nan()) || g as f64 == w;
            assert!(same, "{what} element {f}: {g} vs {w}");
            continue;
        }
        let bound = (k as f64 + 1.0) * s * 2f64.powi(-24) + w.abs() * 2f64.powi(-24);
        assert!(
            (g as f64 - w).abs() <= bound,
            "{what} element {f}: {g} vs {w} (bound {bound})"
        );
    }
}

const BATCHES: [usize; 5] = [1, 2, 7, 8, 33];
const SHAPES: [(usize, usize); 3] = [(37, 45), (70, 33), (5, 17)];
const ZEROS: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

#[test]
fn sparse_matches_the_dense_sum_and_the_tiles_on_every_path() {
    let op = Op::Linear(Linear::MatMul);
    let mut case = 0u64;
    for &m in &BATCHES {
        for &(k, n) in &SHAPES {
            for &z in &ZEROS {
                case += 1;
                let x = values(m * k, 2 * case + 1);
                let w = pruned(k, n, z, 2 * case + 2);
                let (want, mag) = dense_f64(&x, &w, m, k, n);
                let tiles = run(&op, matmul_inputs(&x, &w, m, k, n), &[m, n], false, |_| {});
                for (path, tweak) in paths() {
                    let what = format!("m {m} k {k} n {n} zeros {z} ({path})");
                    let got = run(&op, matmul_inputs(&x, &w, m, k, n), &[m, n], true, tweak);
                    assert_close(&got, &want, &mag, k, &what);
                    if path == "widest" || path == "ymm machine code" {
                        // Skipped zeros add exactly ±0 in the tiles' sequential sum.
                        assert_eq!(got, tiles, "{what}: sparse vs tiles");
                    }
                }
            }
        }
    }
}

#[test]
fn without_fma_every_path_gives_the_same_bits_as_the_tiles() {
    let op = Op::Linear(Linear::MatMul);
    for (c, &m) in BATCHES.iter().enumerate() {
        let (k, n) = (70, 45);
        let x = values(m * k, 40 + c as u64);
        let w = pruned(k, n, 0.9, 50 + c as u64);
        let tiles = run(
            &op,
            matmul_inputs(&x, &w, m, k, n),
            &[m, n],
            false,
            unfused()[0].1,
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let first = run(
            &op,
            matmul_inputs(&x, &w, m, k, n),
            &[m, n],
            true,
            unfused()[0].1,
        );
        assert_eq!(first, tiles, "m {m}: sparse vs tiles without fma");
        for (path, tweak) in unfused() {
            let got = run(&op, matmul_inputs(&x, &w, m, k, n), &[m, n], true, tweak);
            assert_eq!(bits(&got), bits(&first), "m {m}: {path}");
        }
    }
}

/// An epilogue case: what, the op, its inputs, the interpreter's f64 outputs.
type Epilogue = (&'static str, Op, Vec<Option<In>>, Vec<f64>);

#[test]
fn epilogues_are_the_tiles_own() {
    let (k, n) = (50, 21);
    for (c, &m) in [1usize, 8].iter().enumerate() {
        let seed = 100 + 10 * c as u64;
        let x = values(m * k, seed);
        let w = pruned(k, n, 0.9, seed + 1);
        let bias = values(n, seed + 2);
        let cm = values(m * n, seed + 3);
        let wt: Vec<f32> = (0..n * k).map(|f| w[(f % k) * n + f / k]).collect();
        let xt: Vec<f32> = (0..k * m).map(|f| x[(f % m) * k + f / m]).collect();
        let (sum, _) = dense_f64(&x, &w, m, k, n);
        let cases: Vec<Epilogue> = vec![
            (
                "DenseAct relu, W transposed",
                Op::Fused(Fused::DenseAct {
                    trans_b: true,
                    activation: Some(Unary::Relu),
                }),
                vec![
                    Some(In::f32s(&[m, k], &x)),
                    Some(In::f32s(&[n, k], &wt).constant()),
                    Some(In::f32s(&[n], &bias)),
                ],
                sum.iter()
                    .enumerate()
                    .map(|(f, &s)| (s + bias[f % n] as f64).max(0.0))
                    .collect(),
            ),
            (
                "DenseAct tanh",
                Op::Fused(Fused::DenseAct {
                    trans_b: false,
                    activation: Some(Unary::Tanh),
                }),
                vec![
                    Some(In::f32s(&[m, k], &x)),
                    Some(In::f32s(&[k, n], &w).constant()),
                    Some(In::f32s(&[n], &bias)),
                ],
                sum.iter()
                    .enumerate()
                    .map(|(f, &s)| (s + bias[f % n] as f64).tanh())
                    .collect(),
            ),
            (
                "Gemm alpha 0.5 beta 2, A transposed, C [m, n]",
                Op::Linear(Linear::Gemm {
                    alpha: 0.5,
                    beta: 2.0,
                    trans_a: true,
                    trans_b: false,
                }),
                vec![
                    Some(In::f32s(&[k, m], &xt)),
                    Some(In::f32s(&[k, n], &w).constant()),
                    Some(In::f32s(&[m, n], &cm)),
                ],
                sum.iter()
                    .enumerate()
                    .map(|(f, &s)| 0.5 * s + 2.0 * cm[f] as f64)
                    .collect(),
            ),
            (
                "Gemm unit, W transposed, C [n]",
                Op::Linear(Linear::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                }),
                vec![
                    Some(In::f32s(&[m, k], &x)),
                    Some(In::f32s(&[n, k], &wt).constant()),
                    Some(In::f32s(&[n], &bias)),
                ],
                sum.iter()
                    .enumerate()
                    .map(|(f, &s)| s + bias[f % n] as f64)
                    .collect(),
            ),
        ];
        for (what, op, ins, want) in cases {
            let clone = |ins: &[Option<In>]| -> Vec<Option<In>> {
                ins.iter()
                    .map(|t| {
                        t.as_ref().map(|t| {
                            let i = In::new(t.dtype, &t.dims, t.bytes.clone());
                            if t.constant { i.constant() } else { i }
                        })
                    })
                    .collect()
            };
            let tiles = run(&op, clone(&ins), &[m, n], false, |_| {});
            for (path, tweak) in paths() {
                let got = run(&op, clone(&ins), &[m, n], true, tweak);
                if path == "widest" {
                    assert_eq!(got, tiles, "m {m} {what}: sparse vs tiles");
                }
                // The numerics contract: rtol 1e-3, atol 1e-4 of the interpreter.
                for (f, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-4 + 1e-3 * w.abs();
                    assert!(
                        (g as f64 - w).abs() <= tol,
                        "m {m} {what} ({path}) {f}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn non_finite_activations_give_the_dense_products_nan_and_inf() {
    let op = Op::Linear(Linear::MatMul);
    let (k, n) = (40, 35);
    for &m in &[1usize, 2, 8, 33] {
        let w = pruned(k, n, 0.5, 7 + m as u64);
        let mut x = values(m * k, 3 + m as u64);
        // Row 0: one +inf (NaN where it meets a zero weight, ±inf elsewhere); row 1: a NaN and
        // a -inf; index 0 is non-finite in row 0 (the padding's index); the other rows finite.
        x[0] = f32::INFINITY;
        if m > 1 {
            x[k + 3] = f32::NAN;
            x[k + 9] = f32::NEG_INFINITY;
        }
        let (want, mag) = dense_f64(&x, &w, m, k, n);
        let row0 = &want[..n];
        assert!(row0.iter().any(|v| v.is_nan()) && row0.iter().any(|v| v.is_infinite()));
        let tiles = run(&op, matmul_inputs(&x, &w, m, k, n), &[m, n], false, |_| {});
        assert_close(&tiles, &want, &mag, k, &format!("m {m} tiles"));
        for (path, tweak) in paths().into_iter().chain(unfused()) {
            let got = run(&op, matmul_inputs(&x, &w, m, k, n), &[m, n], true, tweak);
            assert_close(&got, &want, &mag, k, &format!("m {m} ({path})"));
        }
    }
}

#[test]
fn a_non_finite_weight_keeps_the_dense_path() {
    let (k, n) = (20, 18);
    let mut w = pruned(k, n, 0.9, 5);
    w[3 * n + 4] = f32::INFINITY;
    assert!(Layout::build(&bytes(&w), k, n, n, 1).is_none());
    w[3 * n + 4] = f32::NAN;
    assert!(Layout::build(&bytes(&w), k, n, n, 1).is_none());
    // Forced sparse still lowers dense: column 4 is NaN (inf · x and NaN · x).
    let x = values(k, 6);
    let got = run(
        &Op::Linear(Linear::MatMul),
        matmul_inputs(&x, &w, 1, k, n),
        &[1, n],
        true,
        |_| {},
    );
    let (want, mag) = dense_f64(&x, &w, 1, k, n);
    assert!(got[4].is_nan());
    assert_close(&got, &want, &mag, k, "NaN weight");
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn the_layout_holds_every_nonzero_once_in_column_order() {
    let (k, n) = (30, 37);
    let w = pruned(k, n, 0.8, 9);
    let l = Layout::build(&bytes(&w), k, n, n, 1).unwrap();
    assert_eq!(l.nonzeros, w.iter().filter(|v| **v != 0.0).count());
    assert_eq!(l.blocks(), 3);
    let mut seen = vec![false; n];
    for (slot, &j) in l.columns.iter().enumerate() {
        assert!(!std::mem::replace(&mut seen[j], true), "column {j} twice");
        let (b, lane) = (slot / 16, slot % 16);
        let mut got = vec![];
        for c in 0..l.chunks[b] {
            let e = (l.starts[b] + c) * 16 + lane;
            if l.val[e] != 0.0 {
                got.push((l.idx[e] as usize, l.val[e]));
            }
        }
        let want: Vec<(usize, f32)> = (0..k)
            .filter(|&p| w[p * n + j] != 0.0)
            .map(|p| (p, w[p * n + j]))
            .collect();
        assert_eq!(got, want, "column {j}");
    }
}

/// Sorting the columns by nonzero count keeps a block's lanes about equally long: on a random
/// 90%-pruned 1024² weight (column counts ≈ 102 ± 9) the padding of the chunks falls from the
/// spread of sixteen arbitrary columns to that of sixteen neighbours in the sorted order.
#[test]
fn sorted_columns_leave_little_padding() {
    let (k, n) = (1024, 1024);
    let w = pruned(k, n, 0.9, 21);
    let l = Layout::build(&bytes(&w), k, n, n, 1).unwrap();
    let counts: Vec<usize> = (0..n)
        .map(|j| (0..k).filter(|&p| w[p * n + j] != 0.0).count())
        .collect();
    let sorted: Vec<usize> = l.columns.iter().map(|&j| counts[j]).collect();
    assert!(sorted.windows(2).all(|p| p[0] >= p[1]), "descending counts");
    let slots = l.total_chunks() * 16;
    // In column order: every block as long as its longest of 16 arbitrary columns.
    let unsorted: usize = counts
        .chunks(16)
        .map(|b| 16 * b.iter().max().unwrap())
        .sum();
    let pad = |s: usize| (s - l.nonzeros) as f64 / l.nonzeros as f64;
    eprintln!(
        "padding: sorted {:.1}%, column order {:.1}%",
        100.0 * pad(slots),
        100.0 * pad(unsorted)
    );
    assert!(pad(slots) < 0.01, "sorted padding {:.3}", pad(slots));
    assert!(pad(unsorted) > 0.05, "the unsorted layout would pad more");
}

/// The model's choice on the bench's layers (784 → 1024 → 1024): sparse for 90% zeros at
/// batch 1 and 8, the tiles for a dense weight; and the lowering follows it.
#[test]
fn the_cost_model_picks_sparse_for_a_pruned_layer_and_the_tiles_for_a_dense_one() {
    let o = crate::CodegenOptions::default();
    for (k, n) in [(784, 1024), (1024, 1024)] {
        let pr = Layout::build(&bytes(&pruned(k, n, 0.9, 11)), k, n, n, 1).unwrap();
        let dense = Layout::build(&bytes(&pruned(k, n, 0.0, 12)), k, n, n, 1).unwrap();
        for batch in [1, 8] {
            assert!(chosen(&o, &pr, batch), "{k}x{n} b{batch} 90% zeros");
            assert!(!chosen(&o, &dense, batch), "{k}x{n} b{batch} dense");
        }
    }
    // Through the lowering: the sparse kernel records its prediction, the tiles none.
    let (k, n) = (784, 1024);
    for (z, sparse) in [(0.9, true), (0.0, false)] {
        let w = pruned(k, n, z, 13);
        let ins = matmul_inputs(&values(k, 14), &w, 1, k, n);
        let mut predicted = None;
        run_node_as(
            |bld, cx| {
                let r = lower_node(bld, &Op::Linear(Linear::MatMul), cx);
                predicted = bld.predicted_ns();
                r
            },
            &ins,
            &[(DType::F32, &[1, n])],
            |_| {},
        )
        .unwrap();
        assert_eq!(predicted.is_some(), sparse, "{z} zeros");
    }
}

/// Where the host has AVX-512 F, or AVX2 with FMA3, the sparse kernel is machine code (at
/// batch 1 and ≥ 2, passes of 4, 8 and 16 rows), and none is placed without it.
#[test]
fn the_widest_path_is_machine_code() {
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx512f") || host_avx2();
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    let no_tweak: Tweak = |_| {};
    let portable: Tweak = |f| f.float_wide = None;
    let (k, n) = (40, 20);
    let w = pruned(k, n, 0.9, 21);
    for m in [1, 3, 8, 20] {
        let ins = matmul_inputs(&values(m * k, 22), &w, m, k, n);
        for (tweak, placed) in [(no_tweak, wide), (portable, false)] {
            FORCE.with(|f| f.set(Some(true)));
            let r = run_node_traced(
                |bld, cx| lower_node(bld, &Op::Linear(Linear::MatMul), cx),
                &ins,
                &[(DType::F32, &[m, n])],
                tweak,
            );
            FORCE.with(|f| f.set(None));
            let (code, _, machine) = r.unwrap();
            assert_eq!(code, 0);
            assert_eq!(machine > 0, placed, "m {m}");
        }
    }
}

/// Split across threads (the parts run in reverse order, so one that read another's CT columns
/// or xT would change the outputs), every path gives the unsplit bits: machine code splits the
/// blocks, elsewhere part 0 computes all of them. Batches 1, 8 and 20 (passes of 1, 8, 16 rows),
/// with a non-finite activation so that part 0's flags are read.
#[test]
fn split_across_threads_gives_the_unsplit_bits() {
    let op = Op::Linear(Linear::MatMul);
    let (k, n) = (512, 300);
    for (c, &m) in [1usize, 8, 20].iter().enumerate() {
        let mut x = values(m * k, 60 + c as u64);
        x[(k + 3) % (m * k)] = f32::INFINITY;
        let w = pruned(k, n, 0.6, 70 + c as u64);
        for (path, tweak) in paths().into_iter().chain(unfused()) {
            let whole = run(&op, matmul_inputs(&x, &w, m, k, n), &[m, n], true, tweak);
            for threads in [2, 3] {
                FORCE.with(|f| f.set(Some(true)));
                let r = run_node_split(
                    |bld, cx| lower_node(bld, &op, cx),
                    &matmul_inputs(&x, &w, m, k, n),
                    &[(DType::F32, &[m, n])],
                    threads,
                    tweak,
                );
                FORCE.with(|f| f.set(None));
                let (code, outs, functions) = r.unwrap();
                assert_eq!(code, 0);
                assert!(functions > threads, "m {m}: {functions} functions");
                let got = f32s(&outs[0]);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&whole),
                    "m {m} ({path}) on {threads} threads"
                );
            }
        }
    }
}
