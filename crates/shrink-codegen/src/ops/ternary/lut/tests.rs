//! The lut kernel against `packed` (the same quantizer, so the same integers and the same bits)
//! and against references computed here: the int8 mode is BitNet's absmax quantizer exactly,
//! the faithful mode within `packed`'s proven bound; every emission path (`pshufb`, the generic
//! `swizzle` path other ISAs take, the scalar fallback) gives the same bits.
use super::*;
use crate::loops::Place;
use crate::loops::emit::IsaFacts;
use crate::loops::testing::run_kernel_as;
use crate::ops::ternary::Layer;
use crate::ops::ternary::packed::packed;
use crate::ops::ternary::test_cases::{Case, assert_within_faithful_bound, case};
use shrink_ir::{Tensor, WeightLayout};

type Tweak = fn(&mut IsaFacts);

/// The lut emission paths this host can run: x86 `pshufb` (the host), the generic `swizzle`
/// path with the wider block of AArch64 / RISC-V V, and the scalar fallback.
const PATHS: [(&str, Tweak); 3] = [
    ("pshufb", |_| {}),
    ("swizzle", |f| f.x86 = false),
    ("scalar", |f| f.simd = false),
];

/// Runs `c` as a lut layer (`lut = true`) or a packed one, with `limbs` limbs, on `tweak`'s path.
fn run(c: &Case, limbs: usize, lut_kernel: bool, tweak: Tweak) -> Vec<f32> {
    let k = layer_kernel(c, limbs, lut_kernel);
    let xb: Vec<u8> = c.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (status, outs) = run_kernel_as(
        &k,
        std::slice::from_ref(&xb),
        &[c.batch * c.rows * 4],
        k.workspace_bytes,
        tweak,
    );
    assert_eq!(status, 0);
    outs[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Bits of `got` equal `want`'s, with the first difference named.
fn same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what} [{i}]: {g} vs {w}");
    }
}

/// Columns not a multiple of the pair, the loop's 4 pairs, a 64-pair chunk or 256; rows from 1
/// to several tiles with a remainder; batch 1 to 9 (blocks of 2 and 4 virtual rows and their
/// remainders); both limb counts, per-row and per-tensor scales: every path, bit for bit
/// `packed`'s output.
#[test]
fn lut_gives_packed_bits_on_every_path() {
    let shapes = [
        (1, 5, 3),
        (2, 37, 9),
        (3, 64, 33),
        (9, 130, 4),
        (1, 301, 70),
        (5, 1000, 31),
        (4, 128, 1),
    ];
    for (batch, cols, rows) in shapes {
        for per_row in [true, false] {
            let c = case(batch, cols, rows, per_row);
            for limbs in [1, 3] {
                let want = run(&c, limbs, false, |_| {});
                for (name, tweak) in PATHS {
                    let got = run(&c, limbs, true, tweak);
                    let what =
                        format!("{batch}x{cols}x{rows} limbs {limbs} per_row {per_row} {name}");
                    same_bits(&got, &want, &what);
                }
            }
        }
    }
}

/// Batch 1 to 9 on one shape with several chunks and tiles: every block size and remainder of
/// virtual rows (batch × limbs) against `packed`.
#[test]
fn every_batch_gives_packed_bits() {
    for batch in 1..=9 {
        let c = case(batch, 300, 40, true);
        for limbs in [1, 3] {
            let want = run(&c, limbs, false, |_| {});
            for (name, tweak) in &PATHS[..2] {
                let got = run(&c, limbs, true, *tweak);
                same_bits(&got, &want, &format!("batch {batch} limbs {limbs} {name}"));
            }
        }
    }
}

/// One limb: BitNet's absmax quantizer `round(x · 127 / a)`, then the exact integer sum scaled
/// back, bit for bit.
#[test]
fn int8_mode_is_the_absmax_quantizer_exactly() {
    for (batch, cols, rows) in [(1, 5, 3), (3, 37, 9), (2, 1000, 33)] {
        let c = case(batch, cols, rows, true);
        let got = run(&c, 1, true, |_| {});
        for n in 0..batch {
            let xs = &c.x[n * cols..(n + 1) * cols];
            let a = xs.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            let xq: Vec<i64> = xs
                .iter()
                .map(|&v| (v as f64 * (127.0 / a)).round_ties_even() as i64)
                .collect();
            for r in 0..rows {
                let scale = 0.25 * (1 + r % 3) as f64;
                let dot: i64 = (0..cols)
                    .map(|k| {
                        xq[k]
                            * c.wv[k * rows + r].signum() as i64
                            * (c.wv[k * rows + r] != 0.0) as i64
                    })
                    .sum();
                let want = (dot as f64 * (a / 127.0) * scale) as f32;
                assert_eq!(got[n * rows + r], want, "{batch}x{cols}x{rows} [{n},{r}]");
            }
        }
    }
}

/// Three limbs: within `scale · nonzeros · a / 2Q` (plus the f32 rounding of the output) of the
/// exact f64 sum.
#[test]
fn faithful_mode_is_within_its_bound() {
    for (batch, cols, rows) in [(1, 5, 3), (3, 37, 9), (2, 1000, 33)] {
        let c = case(batch, cols, rows, true);
        let got = run(&c, 3, true, |_| {});
        assert_within_faithful_bound(&c, &got);
    }
}

/// The largest terms the i16 accumulators take: every weight −1 and every activation at −absmax
/// (digits of −127 / the balanced limbs' extremes) over many chunks, against `packed`'s i32 sums.
#[test]
fn extreme_terms_do_not_overflow_the_i16_accumulators() {
    let (batch, cols, rows) = (2, 1024, 20);
    let mut c = case(batch, cols, rows, false);
    c.wv.iter_mut().for_each(|w| *w = -0.5);
    c.x.iter_mut().enumerate().for_each(|(i, v)| {
        // Row 0: all at −absmax; row 1: values whose 24-bit fixed point has a −128 low limb.
        *v = if i < cols {
            -1.0
        } else {
            -(128.0 + 256.0 * (i % 7) as f32) / 8_355_711.0
        }
    });
    c.x[cols] = -1.0;
    for limbs in [1, 3] {
        let want = run(&c, limbs, false, |_| {});
        for (name, tweak) in PATHS {
            let got = run(&c, limbs, true, tweak);
            same_bits(&got, &want, &format!("limbs {limbs} {name}"));
        }
        assert_eq!(want[0], (0.5 * cols as f64) as f32, "limbs {limbs}");
    }
}

/// A batch row holding an infinity or NaN is summed in f64 like the graph: NaN where a zero
/// weight meets the infinity, ±inf where a nonzero does; other batch rows are unaffected, and
/// an all-zero row gives zeros.
#[test]
fn nonfinite_and_zero_rows_follow_the_graph() {
    let mut c = case(4, 70, 6, true);
    c.x[3] = f32::INFINITY;
    c.x[70 + 10] = f32::NAN;
    for v in &mut c.x[140..210] {
        *v = 0.0;
    }
    for limbs in [1, 3] {
        let want = run(&c, limbs, false, |_| {});
        for (name, tweak) in PATHS {
            let got = run(&c, limbs, true, tweak);
            for r in 0..6 {
                let w = c.wv[3 * 6 + r];
                let y = got[r];
                if w == 0.0 {
                    assert!(y.is_nan(), "limbs {limbs} {name} row {r}: {y}");
                } else {
                    assert_eq!(
                        y,
                        f32::INFINITY * w.signum(),
                        "limbs {limbs} {name} row {r}"
                    );
                }
                assert!(
                    got[6 + r].is_nan(),
                    "limbs {limbs} {name}: NaN row, col {r}"
                );
                assert_eq!(got[12 + r], 0.0, "limbs {limbs} {name}: zero row, col {r}");
            }
            same_bits(
                &got[18..],
                &want[18..],
                &format!("limbs {limbs} {name}: clean row"),
            );
        }
    }
}

/// Not a test: times lut against `packed` on its paths (the host's machine code, the 128-bit
/// VNNI tree, the plain 128-bit tree of CPUs without VNNI) on the matvec bench's shapes, int8
/// activations, and checks they agree bit for bit. Each kernel is compiled once and called
/// repeatedly; the least of 5 medians (lines interleaved: this machine is shared and noisy).
/// Run: `cargo test --release -p shrink-codegen lut_timing -- --ignored --nocapture`
/// (`LUT_TIMING=1024b1,4096b8` for some shapes only).
#[test]
#[ignore]
fn lut_timing() {
    let only = std::env::var("LUT_TIMING").unwrap_or_default();
    for (n, batch) in [
        (256, 1),
        (256, 8),
        (1024, 1),
        (1024, 8),
        (4096, 1),
        (4096, 8),
    ] {
        if !only.is_empty() && !only.split(',').any(|s| s == format!("{n}b{batch}")) {
            continue;
        }
        let c = case(batch, n, n, true);
        let lines: [(&str, bool, Tweak); 5] = [
            ("lut (pshufb)", true, |_| {}),
            ("lut (swizzle)", true, |f| f.x86 = false),
            ("packed (host)", false, |_| {}),
            ("packed 128 vnni", false, |f| f.wide = None),
            ("packed 128", false, |f| {
                f.wide = None;
                f.vnni = false
            }),
        ];
        let mut kernels: Vec<timing::Compiled> = lines
            .iter()
            .map(|(_, lut_kernel, tweak)| {
                timing::Compiled::new(&layer_kernel(&c, 1, *lut_kernel), *tweak)
            })
            .collect();
        let xb: Vec<u8> = c.x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let calls = ((1usize << 27) / (n * n * batch)).max(3);
        let mut best = vec![f64::INFINITY; lines.len()];
        let mut first: Option<Vec<f32>> = None;
        for _ in 0..5 {
            for (i, k) in kernels.iter_mut().enumerate() {
                let (ns, y) = k.time(&xb, c.batch * c.rows * 4, calls);
                best[i] = best[i].min(ns);
                let y: Vec<f32> = y
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                match &first {
                    Some(f) => same_bits(&y, f, lines[i].0),
                    None => first = Some(y),
                }
            }
        }
        for ((name, _, _), ns) in lines.iter().zip(&best) {
            println!(
                "{n}x{n} b{batch} {name:16} {:9.2} µs  {:6.1} G weights/s",
                ns / 1e3,
                (n * n * batch) as f64 / ns
            );
        }
    }
}

/// The kernel of `c` as a lut layer or a packed one.
fn layer_kernel(c: &Case, limbs: usize, lut_kernel: bool) -> crate::loops::ir::Kernel {
    let mut parts = layer_kernels(c, limbs, lut_kernel, 1);
    assert_eq!(parts.len(), 1);
    parts.remove(0)
}

/// The layer's functions, lowered for `threads` threads.
fn layer_kernels(
    c: &Case,
    limbs: usize,
    lut_kernel: bool,
    threads: usize,
) -> Vec<crate::loops::ir::Kernel> {
    let dense = Tensor::from_vec(vec![c.cols, c.rows], c.wv.clone());
    let w = TernaryWeights::detect(&dense, WeightLayout::ColsFirst, 0).unwrap();
    let mut b = Builder::new("lut");
    let xr = b.buffer(Place::Input(0), DType::F32, &[c.batch, c.cols]);
    let yr = b.buffer(Place::Output(0), DType::F32, &[c.batch, c.rows]);
    let layer = Layer {
        w: &w,
        x: &xr,
        bias: None,
        activation: None,
        y: &yr,
        gemm: None,
        grid: None,
    };
    if lut_kernel {
        lut(&mut b, &layer, limbs, threads).unwrap();
    } else {
        packed(&mut b, &layer, limbs, threads).unwrap();
    }
    b.finish_all().unwrap()
}

#[test]
fn lookups_split_across_threads_give_the_unsplit_bits() {
    // Each thread takes whole tiles of 32 rows; the parts run in reverse order here.
    for (batch, cols, rows) in [(1, 1000, 700), (2, 600, 500)] {
        let c = case(batch, cols, rows, true);
        let xb: Vec<u8> = c.x.iter().flat_map(|v| v.to_le_bytes()).collect();
        for limbs in [1, 3] {
            for (name, tweak) in PATHS {
                let whole = run(&c, limbs, true, tweak);
                for threads in [2, 3] {
                    let parts = layer_kernels(&c, limbs, true, threads);
                    assert!(parts.len() > threads, "{} functions", parts.len());
                    let scratch = parts.iter().map(|k| k.workspace_bytes).max().unwrap();
                    let (status, outs) = crate::loops::testing::run_split_kernels(
                        &parts,
                        std::slice::from_ref(&xb),
                        &[c.batch * c.rows * 4],
                        scratch,
                        tweak,
                    );
                    assert_eq!(status, 0);
                    let got = crate::ops::op_testing::f32s(&outs[0]);
                    let what =
                        format!("{batch}x{cols}x{rows} limbs {limbs} {threads} threads {name}");
                    same_bits(&got, &whole, &what);
                }
            }
        }
    }
}

/// One kernel JIT-compiled once for timing ([`crate::loops::testing::Jitted`]).
mod timing {
    use crate::loops::emit::IsaFacts;
    use crate::loops::ir::Kernel;
    use crate::loops::testing::Jitted;

    pub struct Compiled {
        jitted: Jitted,
        scratch: Vec<u8>,
    }

    impl Compiled {
        pub fn new(kernel: &Kernel, tweak: fn(&mut IsaFacts)) -> Compiled {
            Compiled {
                jitted: Jitted::new(kernel, tweak),
                scratch: vec![0u8; kernel.workspace_bytes],
            }
        }

        /// The median nanoseconds of one call over 5 samples of `calls` calls, and the output.
        pub fn time(&mut self, input: &[u8], out_bytes: usize, calls: usize) -> (f64, Vec<u8>) {
            let mut out = vec![0u8; out_bytes];
            let ins = [input.as_ptr()];
            let mut outs = [out.as_mut_ptr()];
            let mut samples: Vec<f64> = (0..5)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..calls {
                        // SAFETY: the buffers have the kernel's sizes (input, output, workspace).
                        let status =
                            unsafe { self.jitted.call(&ins, &mut outs, &mut self.scratch) };
                        assert_eq!(status, 0);
                    }
                    t.elapsed().as_nanos() as f64 / calls as f64
                })
                .collect();
            samples.sort_by(f64::total_cmp);
            (samples[2], out)
        }
    }
}
