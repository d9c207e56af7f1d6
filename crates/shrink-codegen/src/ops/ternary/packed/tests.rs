//! The packed kernel against references computed here: the int8 mode bit-exactly (the same
//! quantizer and integer sum), the faithful mode within its proven bound, every emission path
//! (zmm and ymm machine code, VNNI tree, plain SIMD, scalar fallback) bit-identical to the
//! others.
//!
//! The machine-code paths need AVX-512 F, VL and VNNI on the host (every CI host, Zen 4 or
//! Xeon, has them): without them these tests fail, never skip. The VEX ymm path also needs
//! AVX-VNNI, which Zen 4 lacks: there it is assembled and checked for VEX encodings only.
use super::*;
use crate::loops::Place;
use crate::loops::emit::{IsaFacts, Wide};
use crate::loops::testing::run_kernel_traced;
use crate::ops::ternary::Layer;
use crate::ops::ternary::grid::Grid;
use crate::ops::ternary::test_cases::{self, Case, absmax, assert_within_faithful_bound};
use shrink_ir::{Tensor, WeightLayout};

/// The shared test layer with a scale per output row.
fn case(batch: usize, cols: usize, rows: usize) -> Case {
    test_cases::case(batch, cols, rows, true)
}

/// Runs the packed layer on `c` with `limbs` limbs, for every emission path the host can show.
fn run(c: &Case, limbs: usize) -> Vec<Vec<f32>> {
    run_on(c, limbs, None)
}

/// [`run`] with the activations declared on the graph's int8 grid `grid`.
fn run_on(c: &Case, limbs: usize, grid: Option<Grid>) -> Vec<Vec<f32>> {
    let mut parts = build(c, limbs, grid, 1);
    assert_eq!(parts.len(), 1);
    let k = parts.remove(0);
    let xb: Vec<u8> = c.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    paths()
        .into_iter()
        .map(|(name, tweak)| {
            let (status, outs, machine) = run_kernel_traced(
                &k,
                std::slice::from_ref(&xb),
                &[c.batch * c.rows * 4],
                k.workspace_bytes,
                tweak,
            );
            assert_eq!(status, 0);
            let wide = name.starts_with("machine");
            assert_eq!(
                machine > 0,
                wide,
                "{name}: machine code placed: {machine} bytes"
            );
            f32s(&outs[0])
        })
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    crate::ops::op_testing::f32s(bytes)
}

/// The layer's functions, lowered for `threads` threads.
fn build(c: &Case, limbs: usize, grid: Option<Grid>, threads: usize) -> Vec<crate::loops::Kernel> {
    let dense = Tensor::from_vec(vec![c.cols, c.rows], c.wv.clone());
    let w = TernaryWeights::detect(&dense, WeightLayout::ColsFirst, 0).unwrap();
    let mut b = Builder::new("packed");
    let xr = b.buffer(Place::Input(0), DType::F32, &[c.batch, c.cols]);
    let yr = b.buffer(Place::Output(0), DType::F32, &[c.batch, c.rows]);
    let layer = Layer {
        w: &w,
        x: &xr,
        bias: None,
        activation: None,
        y: &yr,
        gemm: None,
        grid,
    };
    packed(&mut b, &layer, limbs, threads).unwrap();
    b.finish_all().unwrap()
}

#[test]
fn dots_split_across_threads_give_the_unsplit_bits() {
    // Each thread takes whole output rows (codes and dots offset, digits shared); the parts run
    // in reverse order here, so one that touched another's rows would change the outputs.
    for (batch, cols, rows) in [(1, 1000, 700), (3, 512, 401)] {
        let c = case(batch, cols, rows);
        let xb: Vec<u8> = c.x.iter().flat_map(|v| v.to_le_bytes()).collect();
        for limbs in [1, 3] {
            let whole = run(&c, limbs);
            for threads in [2, 3] {
                let parts = build(&c, limbs, None, threads);
                assert!(parts.len() > threads, "{} functions", parts.len());
                let scratch = parts.iter().map(|k| k.workspace_bytes).max().unwrap();
                for ((name, tweak), want) in paths().into_iter().zip(&whole) {
                    let (status, outs) = crate::loops::testing::run_split_kernels(
                        &parts,
                        std::slice::from_ref(&xb),
                        &[c.batch * c.rows * 4],
                        scratch,
                        tweak,
                    );
                    assert_eq!(status, 0);
                    let got = f32s(&outs[0]);
                    assert!(
                        got.iter()
                            .zip(want)
                            .all(|(g, w)| g.to_bits() == w.to_bits()),
                        "{batch}x{cols}x{rows}, {limbs} limbs, {threads} threads, {name}"
                    );
                }
            }
        }
    }
}

/// Which machine-code kernels this host runs: the EVEX ones (AVX-512 F, VL and VNNI), the VEX
/// one (AVX-VNNI) and the AVX2 one (no VNNI). Machines differ (a Xeon and Zen 4 have AVX-512, other x86-64 hosts only
/// AVX2), so a kernel the host cannot run is said, not hidden: it is assembled and its
/// encodings checked (`machine_code_uses_only_its_encoding`), and every other path runs.
fn host_wide() -> (bool, bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let evex = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && avx2;
        (
            evex,
            avx2 && std::arch::is_x86_feature_detected!("avxvnni"),
            avx2,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (false, false, false)
    }
}

type Tweak = fn(&mut IsaFacts);

/// Every emission path, named (the machine-code ones first).
fn paths() -> Vec<(&'static str, Tweak)> {
    let (evex, vex, avx2) = host_wide();
    let mut p: Vec<(&'static str, Tweak)> = vec![];
    if evex {
        p.push(("machine zmm", |f| f.wide = Some(Wide::Zmm)));
        p.push(("machine ymm evex", |f| f.wide = Some(Wide::YmmEvex)));
    } else {
        eprintln!(
            "note: this host has no AVX-512 VNNI; the zmm and EVEX ymm kernels are checked but \
             not run"
        );
    }
    if vex {
        p.push(("machine ymm vex", |f| f.wide = Some(Wide::YmmVex)));
    } else {
        // Zen 4 has AVX-512 VNNI but no AVX-VNNI.
        eprintln!("note: this host has no AVX-VNNI; the VEX ymm kernel is checked but not run");
    }
    if avx2 {
        p.push(("machine ymm avx2", |f| f.wide = Some(Wide::Avx2)));
    } else {
        eprintln!("note: this host has no AVX2; the AVX2 ymm kernel is checked but not run");
    }
    p.push(("128-bit vnni", |f| f.wide = None));
    p.push(("128-bit", |f| {
        f.wide = None;
        f.vnni = false
    }));
    p.push(("scalar", |f| f.simd = false));
    p
}

const SHAPES: [(usize, usize, usize); 6] = [
    (1, 5, 3),
    (3, 37, 9),
    (6, 64, 17),
    (9, 130, 4),
    (1, 300, 70),
    (2, 1000, 33),
];

/// Three limbs: within `scale · nonzeros · a / 2Q` (plus the f32 rounding of the output) of the
/// exact f64 sum, and the same bits on every path.
#[test]
fn faithful_mode_is_within_its_bound_on_every_path() {
    for (batch, cols, rows) in SHAPES {
        let c = case(batch, cols, rows);
        let got = run(&c, 3);
        for path in &got[1..] {
            assert_eq!(path, &got[0], "{batch}x{cols}x{rows}: paths differ");
        }
        assert_within_faithful_bound(&c, &got[0]);
    }
}

/// One limb: BitNet's absmax quantizer `round(x · 127 / a)`, then the exact integer sum scaled
/// back, bit for bit.
#[test]
fn int8_mode_is_the_absmax_quantizer_exactly() {
    for (batch, cols, rows) in SHAPES {
        let c = case(batch, cols, rows);
        let got = run(&c, 1);
        for path in &got[1..] {
            assert_eq!(path, &got[0], "{batch}x{cols}x{rows}: paths differ");
        }
        for n in 0..batch {
            let xs = &c.x[n * cols..(n + 1) * cols];
            let a = absmax(xs);
            let inv = 127.0 / a;
            let xq: Vec<i64> = xs
                .iter()
                .map(|&v| (v as f64 * inv).round_ties_even() as i64)
                .collect();
            for r in 0..rows {
                let scale = 0.25 * (1 + r % 3) as f64;
                let dot: i64 = (0..cols)
                    .map(|k| {
                        let w = c.wv[k * rows + r];
                        xq[k]
                            * if w > 0.0 {
                                1
                            } else if w < 0.0 {
                                -1
                            } else {
                                0
                            }
                    })
                    .sum();
                let want = (dot as f64 * (a / 127.0) * scale) as f32;
                assert_eq!(
                    got[0][n * rows + r],
                    want,
                    "{batch}x{cols}x{rows} [{n},{r}]"
                );
            }
        }
    }
}

/// A batch row holding an infinity or NaN is summed in f64 like the graph: NaN where a zero
/// weight meets the infinity, ±inf where a nonzero does; other batch rows are unaffected, and
/// an all-zero row gives zeros.
#[test]
fn nonfinite_and_zero_rows_follow_the_graph() {
    let mut c = case(4, 70, 6);
    c.x[3] = f32::INFINITY;
    c.x[70 + 10] = f32::NAN;
    for v in &mut c.x[140..210] {
        *v = 0.0;
    }
    let clean = case(4, 70, 6);
    for limbs in [1, 3] {
        let got = run(&c, limbs);
        let want_clean = run(&clean, limbs);
        for path in &got {
            for r in 0..6 {
                let w = c.wv[3 * 6 + r];
                let y = path[r];
                if w == 0.0 {
                    assert!(y.is_nan(), "limbs {limbs} row {r}: {y}");
                } else {
                    assert_eq!(y, f32::INFINITY * w.signum(), "limbs {limbs} row {r}");
                }
                assert!(path[6 + r].is_nan(), "limbs {limbs}: NaN row, col {r}");
                assert_eq!(path[12 + r], 0.0, "limbs {limbs}: zero row, col {r}");
                assert_eq!(
                    path[18 + r],
                    want_clean[0][18 + r],
                    "limbs {limbs}: clean row"
                );
            }
        }
    }
}

/// Batch 1 to 9 (the machine code's batch blocks and their remainders), columns that are not a
/// multiple of 256 (padded groups) or span several loop steps with a tail, both limb counts:
/// every path gives the same bits.
#[test]
fn machine_code_matches_every_path_across_batches_and_limbs() {
    for limbs in [1, 3] {
        for batch in 1..=9 {
            // 20000 columns at batch 9 with three limbs: more digits than the row-outer loop
            // takes, so the batch-outer one runs.
            for (cols, rows) in [(300, 5), (1500, 3), (20000, 2)] {
                if cols == 20000 && (limbs != 3 || batch != 9) {
                    continue;
                }
                let got = run(&case(batch, cols, rows), limbs);
                for (path, (name, _)) in got[1..].iter().zip(&paths()[1..]) {
                    assert_eq!(
                        path, &got[0],
                        "limbs {limbs}, {batch}x{cols}x{rows}: {name} differs from zmm"
                    );
                }
            }
        }
    }
}

/// The VEX ymm kernel (AVX-VNNI) is VEX only, and the EVEX kernels contain no VEX `vpdpbusd`
/// (Zen 4 has AVX-512 VNNI without AVX-VNNI): checked by decoding, so it holds on any host.
#[test]
fn machine_code_uses_only_its_encoding() {
    use iced_x86::{Code, Decoder, DecoderOptions};
    let shape = Shape {
        rows: 3,
        blocks: 12,
        batch: 5,
        limbs: 3,
    };
    for wide in [Wide::Zmm, Wide::YmmEvex, Wide::YmmVex, Wide::Avx2] {
        let vex_only = matches!(wide, Wide::YmmVex | Wide::Avx2);
        let code = x86::dots(wide, shape).unwrap();
        let (mut evex, mut vnni) = (0, 0);
        for ins in Decoder::new(64, &code.bytes, DecoderOptions::NONE) {
            assert_ne!(ins.code(), Code::INVALID, "{wide:?}");
            // Code names say the encoding: `EVEX_Vpdpbusd_…`, `VEX_Vpand_…`.
            let name = format!("{:?}", ins.code());
            if name.starts_with("EVEX_") {
                evex += 1;
            } else if wide != Wide::YmmVex {
                assert_ne!(ins.code(), Code::VEX_Vpdpbusd_ymm_ymm_ymmm256, "{wide:?}");
            }
            vnni += name.contains("Vpdpbusd") as usize;
        }
        assert_eq!(evex == 0, vex_only, "{wide:?}: {evex} EVEX instructions");
        // AVX2 alone has no VNNI: its dot products are vpmaddubsw + vpmaddwd.
        assert_eq!(vnni == 0, wide == Wide::Avx2, "{wide:?}: {vnni} vpdpbusd");
    }
}

/// `c` with every batch row replaced by BitNet's fake-quantized activations as the graph
/// computes them in f32: `s = 127 / max(absmax, eps)`, `q = round(x·s)`, `y = q / s`. Returns
/// the integers too.
fn on_absmax_grid(c: &Case) -> (Case, Vec<i64>) {
    let mut y = c.x.clone();
    let mut qs = vec![0i64; y.len()];
    for (row, qrow) in y.chunks_mut(c.cols).zip(qs.chunks_mut(c.cols)) {
        let a = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = 127f32 / a.max(1e-5);
        for (v, q) in row.iter_mut().zip(qrow.iter_mut()) {
            let r = (*v * s).round_ties_even().clamp(-128.0, 127.0);
            *q = r as i64;
            *v = r / s;
        }
    }
    let case = Case {
        x: y,
        wv: c.wv.clone(),
        ..*c
    };
    (case, qs)
}

/// The ternary sign of weight (column `k`, row `r`) of `c`.
fn sign(c: &Case, k: usize, r: usize) -> i64 {
    let w = c.wv[k * c.rows + r];
    (w > 0.0) as i64 - (w < 0.0) as i64
}

/// BitNet's per-row grid: the digits are the graph's integers, the output `a/127 · Σ w q` bit
/// for bit on every path; a row the epsilon clamp rescaled (all values below 1e-5, so its
/// largest integer is below 127) is off the re-quantized grid and is the f64 sum of `y`.
#[test]
fn absmax_grid_runs_the_graphs_integers_on_every_path() {
    for (batch, cols, rows) in SHAPES {
        let mut c = case(batch, cols, rows);
        // The last row tiny (absmax 4e-7 < eps): the clamp acts, its integers reach only 5.
        let last = (batch - 1) * cols;
        for v in &mut c.x[last..] {
            *v *= 2e-7;
        }
        let (c, qs) = on_absmax_grid(&c);
        let got = run_on(&c, 1, Some(Grid::RowAbsmax { full: 127 }));
        for path in &got[1..] {
            assert_eq!(path, &got[0], "{batch}x{cols}x{rows}: paths differ");
        }
        for n in 0..batch {
            let ys = &c.x[n * cols..(n + 1) * cols];
            let q = &qs[n * cols..(n + 1) * cols];
            let qmax = q.iter().map(|v| v.abs()).max().unwrap();
            let a = absmax(ys);
            for r in 0..rows {
                let scale = 0.25 * (1 + r % 3) as f64;
                let want = if qmax == 127 {
                    let dot: i64 = (0..cols).map(|k| q[k] * sign(&c, k, r)).sum();
                    (dot as f64 * (a / 127.0) * scale) as f32
                } else {
                    let sum: f64 = (0..cols)
                        .map(|k| ys[k] as f64 * sign(&c, k, r) as f64)
                        .sum();
                    (sum * scale) as f32
                };
                assert_eq!(
                    got[0][n * rows + r],
                    want,
                    "{batch}x{cols}x{rows} [{n},{r}] (max |q| {qmax})"
                );
            }
        }
    }
}

/// A compile-time step (QDQ): digits `round(y / step)` including -128, output `step · Σ w q`
/// exactly on every path; a row with a value off the grid is the f64 sum.
#[test]
fn fixed_grid_runs_the_graphs_integers_on_every_path() {
    let step = 0.0125f32;
    for (batch, cols, rows) in SHAPES {
        let mut c = case(batch, cols, rows);
        let qs: Vec<i64> =
            c.x.iter()
                .map(|&v| ((v / step).round_ties_even() as i64 * 3).clamp(-128, 127))
                .collect();
        c.x = qs.iter().map(|&q| q as f32 * step).collect();
        // Batch row 0 gets one value between grid points (when there is more than one row).
        if batch > 1 {
            c.x[cols / 2] += step / 3.0;
        }
        let got = run_on(&c, 1, Some(Grid::Fixed { step: step as f64 }));
        for path in &got[1..] {
            assert_eq!(path, &got[0], "{batch}x{cols}x{rows}: paths differ");
        }
        for n in 0..batch {
            for r in 0..rows {
                let scale = 0.25 * (1 + r % 3) as f64;
                let want = if n == 0 && batch > 1 {
                    let sum: f64 = (0..cols)
                        .map(|k| c.x[n * cols + k] as f64 * sign(&c, k, r) as f64)
                        .sum();
                    (sum * scale) as f32
                } else {
                    let dot: i64 = (0..cols).map(|k| qs[n * cols + k] * sign(&c, k, r)).sum();
                    (dot as f64 * step as f64 * scale) as f32
                };
                assert_eq!(
                    got[0][n * rows + r],
                    want,
                    "{batch}x{cols}x{rows} [{n},{r}]"
                );
            }
        }
    }
}

/// The SIMD quantizer against the loop-language one (the scalar path): column counts around
/// its 4- and 16-column chunks and the 256-column groups, activations at the edges of f32 (the
/// largest finite, subnormals, negative zero, exact ties of the rounding) — the same bits on
/// every path, with both limb counts and the faithful bound.
#[test]
fn quantizer_edges_give_the_same_bits_on_every_path() {
    let edges = [
        f32::MAX,
        -f32::MAX,
        f32::MIN_POSITIVE,
        -1e-40,
        1e-45,
        -0.0,
        0.0,
        1.5,
        -2.5,
        0.5,
        3.0e38,
    ];
    for cols in [1, 3, 4, 5, 15, 16, 17, 31, 255, 256, 257, 300] {
        let mut c = case(2, cols, 7);
        for (i, v) in c.x.iter_mut().enumerate().step_by(3) {
            *v = edges[i % edges.len()];
        }
        let mut tame = case(2, cols, 7);
        for (i, v) in tame.x.iter_mut().enumerate().step_by(3) {
            *v = edges[i % edges.len()].clamp(-1e35, 1e35);
        }
        // The second batch row small enough for ties: its absmax 127 makes `x · 127 / a = x`.
        for (i, v) in c.x[cols..].iter_mut().enumerate() {
            *v = [127.0, -126.5, 0.5, -1.5, 2.5, 0.0][i % 6];
        }
        for (c, limbs) in [(&c, 1), (&c, 3), (&tame, 1), (&tame, 3)] {
            let got = run(c, limbs);
            for (path, (name, _)) in got[1..].iter().zip(&paths()[1..]) {
                let same = path
                    .iter()
                    .zip(&got[0])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{cols} columns, {limbs} limbs: {name} differs from zmm"
                );
            }
            // The bound holds where the exact sums are finite in f32 (not with f32::MAX inputs,
            // whose sums overflow to inf as they should).
            if limbs == 3 && c.x.iter().all(|v| v.abs() < 1e36) {
                assert_within_faithful_bound(c, &got[0]);
            }
        }
    }
}

/// The largest sums a lane can hold: every weight of a row +1 (or −1) and every activation at
/// its absmax, so every digit is ±127 and each product pair is at its extreme, over rows long
/// enough for many of the narrow kernel's i16 steps and a tail. An i16 sum kept past its bound
/// (or a saturated pair) would show; exact sums give `±cols` on every path, both limb counts.
#[test]
fn extreme_digits_on_long_rows_sum_exactly_on_every_path() {
    for cols in [8192, 8492] {
        let rows = 3;
        let sign = |c: usize, r: usize| match r {
            0 => 1.0,
            1 => -1.0,
            _ => [1.0, -1.0][c % 2],
        };
        let mut wv = vec![0f32; cols * rows];
        for c in 0..cols {
            for r in 0..rows {
                wv[c * rows + r] = sign(c, r);
            }
        }
        let x = [vec![1.0f32; cols], vec![-1.0; cols]].concat();
        let c = Case {
            batch: 2,
            cols,
            rows,
            wv,
            x,
        };
        for limbs in [1, 3] {
            let got = run(&c, limbs);
            for (path, (name, _)) in got.iter().zip(paths()) {
                for n in 0..2 {
                    for r in 0..rows {
                        let exact: f32 = (0..cols).map(|k| sign(k, r) * c.x[n * cols + k]).sum();
                        assert_eq!(
                            path[n * rows + r],
                            exact,
                            "{name}, {limbs} limbs, {cols} columns [{n},{r}]"
                        );
                    }
                }
            }
        }
    }
}
