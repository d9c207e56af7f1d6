//! The SIMD tiles against a plain f64 sum (within the f32 rounding bound of a sequential sum)
//! over shapes that hit every tile and panel tail, batched and broadcast products, transposed
//! operands, constant and per-call B, f64; and against their scalar fallback bit for bit when
//! the ISA has no fused multiply-add.
use crate::loops::emit::Wide;
use crate::ops::lower_node;
use crate::ops::op_testing::{In, f32s, run_node_as, run_node_split, run_node_traced, values};
use shrink_ir::op::{Linear, Op};
use shrink_ir::{DType, Tensor};

/// A change to the host's ISA facts (to run a lesser target's code path here).
type Tweak = fn(&mut crate::loops::emit::IsaFacts);

/// A product as a test states it: A `[batch.., m, k]`, B `[bbatch.., k, n]`.
struct Case {
    a_dims: Vec<usize>,
    b_dims: Vec<usize>,
    b_constant: bool,
}

/// numpy matmul of `a` and `b` (3-D or less, B broadcast over A's batch) in f64, with each
/// output's sum of |terms| (the scale of its rounding error).
fn reference(c: &Case, a: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (m, k) = (c.a_dims[c.a_dims.len() - 2], c.a_dims[c.a_dims.len() - 1]);
    let n = c.b_dims[c.b_dims.len() - 1];
    let batches: usize = c.a_dims[..c.a_dims.len() - 2].iter().product();
    let b_batches: usize = c.b_dims[..c.b_dims.len() - 2].iter().product();
    let (mut y, mut mag) = (vec![], vec![]);
    for bi in 0..batches {
        let bb = if b_batches == 1 { 0 } else { bi };
        for i in 0..m {
            for j in 0..n {
                let terms: Vec<f64> = (0..k)
                    .map(|p| a[(bi * m + i) * k + p] as f64 * b[(bb * k + p) * n + j] as f64)
                    .collect();
                y.push(terms.iter().sum());
                mag.push(terms.iter().map(|t| t.abs()).sum());
            }
        }
    }
    (y, mag)
}

fn out_dims(c: &Case) -> Vec<usize> {
    let mut d = c.a_dims.clone();
    *d.last_mut().unwrap() = *c.b_dims.last().unwrap();
    d
}

fn run(c: &Case, a: &[f32], b: &[f32], tweak: Tweak) -> Vec<u8> {
    run_traced(c, a, b, tweak).0
}

/// The output bytes and the bytes of machine code placed.
fn run_traced(c: &Case, a: &[f32], b: &[f32], tweak: Tweak) -> (Vec<u8>, usize) {
    let mut bin = In::f32s(&c.b_dims, b);
    if c.b_constant {
        bin = bin.constant();
    }
    let out = out_dims(c);
    let (code, outs, machine) = run_node_traced(
        |bld, cx| lower_node(bld, &Op::Linear(Linear::MatMul), cx),
        &[Some(In::f32s(&c.a_dims, a)), Some(bin)],
        &[(DType::F32, &out)],
        tweak,
    )
    .unwrap();
    assert_eq!(code, 0);
    (outs.into_iter().next().unwrap(), machine)
}

fn cases() -> Vec<Case> {
    let mut v = vec![];
    for (m, k, n) in [
        (1, 1, 1),
        (1, 7, 33),
        (1, 64, 70),
        (2, 5, 16),
        (3, 9, 31),
        (4, 16, 8),
        (5, 3, 9),
        (9, 33, 17),
        (6, 2, 4),
        // Several full panels and strips: 128-wide at one row, 64-wide with a rest row tile.
        (1, 40, 300),
        (13, 20, 150),
        // ymm shapes other than 6 × 2: 4 × 3 (strips of 3, 3, 2 vectors), 2 × 4, 5 × 2.
        (8, 24, 200),
        (2, 10, 130),
        (5, 7, 70),
        // ymm `k` blocks (256 steps): 256 + 256 + 88, and 256 + 44 at one row.
        (8, 600, 70),
        (1, 300, 140),
    ] {
        for b_constant in [true, false] {
            v.push(Case {
                a_dims: vec![m, k],
                b_dims: vec![k, n],
                b_constant,
            });
        }
    }
    // Batched: B per batch (per call) and B shared by every batch (constant and per call).
    v.push(Case {
        a_dims: vec![3, 5, 6],
        b_dims: vec![3, 6, 10],
        b_constant: false,
    });
    for b_constant in [true, false] {
        v.push(Case {
            a_dims: vec![2, 3, 12],
            b_dims: vec![12, 5],
            b_constant,
        });
    }
    v
}

#[test]
fn tiles_match_an_f64_sum_within_the_f32_rounding_bound() {
    for (t, c) in cases().iter().enumerate() {
        let a = values(c.a_dims.iter().product(), 2 * t as u64 + 1);
        let b = values(c.b_dims.iter().product(), 2 * t as u64 + 2);
        let got = f32s(&run(c, &a, &b, |_| {}));
        let (want, mag) = reference(c, &a, &b);
        assert_eq!(got.len(), want.len());
        let k = c.a_dims[c.a_dims.len() - 1] as f64;
        for (f, (&g, (&w, &s))) in got.iter().zip(want.iter().zip(&mag)).enumerate() {
            // A sequential f32 sum of k terms errs by at most about k·2⁻²⁴ of Σ|terms|, plus
            // the final rounding.
            let bound = (k + 1.0) * s * 2f64.powi(-24) + w.abs() * 2f64.powi(-24);
            assert!(
                (g as f64 - w).abs() <= bound,
                "case {t} ({:?} x {:?}) element {f}: {g} vs {w} (bound {bound})",
                c.a_dims,
                c.b_dims
            );
        }
    }
}

#[test]
fn without_fma_the_tiles_give_the_scalar_fallbacks_bits() {
    // Without FMA (a target lacking it, or `--no-fma`), the zmm and ymm machine code (where the
    // host has AVX-512, AVX2 + FMA3) and the 128-bit tiles multiply and add with two roundings,
    // as the scalar loop does.
    let mut unfused: Vec<(&str, Tweak)> = vec![
        ("widest tiles", |f| f.fma = false),
        ("128-bit tiles", |f| {
            f.fma = false;
            f.float_wide = None;
        }),
    ];
    let (zmm, ymm) = host_float_wide();
    if zmm {
        unfused.push(("zmm tiles", |f| {
            f.fma = false;
            f.float_wide = Some(Wide::Zmm);
        }));
    }
    if ymm {
        unfused.push(("ymm tiles", |f| {
            f.fma = false;
            f.float_wide = Some(Wide::YmmVex);
        }));
    }
    for (t, c) in cases().iter().enumerate() {
        let a = values(c.a_dims.iter().product(), 3 * t as u64 + 1);
        let b = values(c.b_dims.iter().product(), 3 * t as u64 + 2);
        let scalar = run(c, &a, &b, |f| f.simd = false);
        for &(what, tweak) in &unfused {
            assert_eq!(run(c, &a, &b, tweak), scalar, "case {t}: {what}");
        }
    }
}

#[test]
fn transposed_a_and_f64_products_are_tiled_too() {
    // Gemm with A transposed reads A's rows at a stride; alpha = beta = 1 adds C in f32.
    let (m, k, n) = (5, 7, 13);
    let a = values(k * m, 11);
    let b = values(k * n, 12);
    let cv = values(n, 13);
    let op = Op::Linear(Linear::Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: true,
        trans_b: false,
    });
    let (code, outs) = run_node_as(
        |bld, cx| lower_node(bld, &op, cx),
        &[
            Some(In::f32s(&[k, m], &a)),
            Some(In::f32s(&[k, n], &b).constant()),
            Some(In::f32s(&[n], &cv)),
        ],
        &[(DType::F32, &[m, n])],
        |_| {},
    )
    .unwrap();
    assert_eq!(code, 0);
    let got = f32s(&outs[0]);
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| a[p * m + i] as f64 * b[p * n + j] as f64)
                .sum::<f64>()
                + cv[j] as f64;
            let g = got[i * n + j] as f64;
            assert!((g - want).abs() < 1e-5, "({i}, {j}): {g} vs {want}");
        }
    }

    // f64 operands: f64x2 tiles, error at the f64 rounding scale.
    let (m, k, n) = (3, 9, 7);
    let to_f64 = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64 / 3.0).collect() };
    let (a, b) = (to_f64(&values(m * k, 21)), to_f64(&values(k * n, 22)));
    let bytes = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (code, outs) = run_node_as(
        |bld, cx| lower_node(bld, &Op::Linear(Linear::MatMul), cx),
        &[
            Some(In::new(DType::F64, &[m, k], bytes(&a))),
            Some(In::new(DType::F64, &[k, n], bytes(&b))),
        ],
        &[(DType::F64, &[m, n])],
        |_| {},
    )
    .unwrap();
    assert_eq!(code, 0);
    let got = Tensor::from_bytes(DType::F64, vec![m, n], outs[0].clone().into())
        .unwrap()
        .to_f64_vec();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            assert!((got[i * n + j] - want).abs() < 1e-14, "({i}, {j})");
        }
    }
}

/// Which machine-code tiles this host runs: zmm (AVX-512 F) and ymm (AVX2 with FMA3).
fn host_float_wide() -> (bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        (
            std::arch::is_x86_feature_detected!("avx512f"),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (false, false)
    }
}

/// The machine-code tiles the host runs, forced one by one.
fn machine_paths() -> Vec<(&'static str, Tweak)> {
    let (zmm, ymm) = host_float_wide();
    let mut p: Vec<(&'static str, Tweak)> = vec![];
    if zmm {
        p.push(("zmm tiles", |f| f.float_wide = Some(Wide::Zmm)));
    } else {
        eprintln!("note: this host has no AVX-512 F: the zmm tiles are not run");
    }
    if ymm {
        p.push(("ymm tiles", |f| f.float_wide = Some(Wide::YmmVex)));
    } else {
        eprintln!("note: this host has no AVX2 + FMA3: the ymm tiles are not run");
    }
    p
}

#[test]
fn machine_code_gives_the_128_bit_tiles_bits() {
    let (zmm, ymm) = host_float_wide();
    let machine_paths = machine_paths();
    for (t, c) in cases().iter().enumerate() {
        let a = values(c.a_dims.iter().product(), 5 * t as u64 + 1);
        let b = values(c.b_dims.iter().product(), 5 * t as u64 + 2);
        let (widest, machine) = run_traced(c, &a, &b, |_| {});
        assert_eq!(machine > 0, zmm || ymm, "case {t}: machine code placed");
        let (narrow, none) = run_traced(c, &a, &b, |f| f.float_wide = None);
        assert_eq!(none, 0);
        assert_eq!(widest, narrow, "case {t} ({:?} x {:?})", c.a_dims, c.b_dims);
        for &(what, tweak) in &machine_paths {
            let (got, placed) = run_traced(c, &a, &b, tweak);
            assert!(placed > 0, "case {t}: {what} placed");
            assert_eq!(
                got, narrow,
                "case {t} {what} ({:?} x {:?})",
                c.a_dims, c.b_dims
            );
        }
    }
}

#[test]
fn tiles_split_across_threads_give_the_unsplit_bits() {
    // Each thread takes whole panels; its parts run in reverse order here, so a part that read
    // another's columns would change the outputs. Shapes: one row (128-wide panels), several
    // rows (64-wide), a narrower last panel, per-call B shared by a batch.
    let cases = [
        (vec![1, 1024], vec![1024, 600], true),
        (vec![8, 256], vec![256, 300], true),
        (vec![8, 256], vec![256, 300], false),
        (vec![2, 4, 128], vec![128, 520], false),
    ];
    let mut paths: Vec<(&str, Tweak)> = vec![
        ("128-bit tiles", |f| f.float_wide = None),
        ("scalar", |f| f.simd = false),
    ];
    paths.extend(machine_paths());
    for (t, (a_dims, b_dims, b_constant)) in cases.into_iter().enumerate() {
        let c = Case {
            a_dims,
            b_dims,
            b_constant,
        };
        let a = values(c.a_dims.iter().product(), 5 * t as u64 + 1);
        let b = values(c.b_dims.iter().product(), 5 * t as u64 + 2);
        let out = out_dims(&c);
        for &(what, tweak) in &paths {
            let whole = run(&c, &a, &b, tweak);
            for threads in [2, 3, 5] {
                let mut bin = In::f32s(&c.b_dims, &b);
                if c.b_constant {
                    bin = bin.constant();
                }
                let (code, outs, functions) = run_node_split(
                    |bld, cx| lower_node(bld, &Op::Linear(Linear::MatMul), cx),
                    &[Some(In::f32s(&c.a_dims, &a)), Some(bin)],
                    &[(DType::F32, &out)],
                    threads,
                    tweak,
                )
                .unwrap();
                assert_eq!(code, 0);
                assert!(
                    functions > threads,
                    "case {t}: split into {functions} functions"
                );
                assert!(
                    outs[0] == whole,
                    "case {t} ({what}) on {threads} threads: outputs differ"
                );
            }
        }
    }
}
