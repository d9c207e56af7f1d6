//! The int8 dot products against the loop nest (the same op with B not marked constant, which
//! the int8 kernel does not take), bit for bit: every signedness of A and B, zero points per
//! tensor, per row and per column, QLinearMatMul's requantization, extreme values that wrap,
//! batched A, every emission path (VNNI, the plain SIMD form, the scalar fallback) and a split
//! across threads.
use crate::loops::emit::IsaFacts;
use crate::ops::lower_node;
use crate::ops::op_testing::{In, run_node_as, run_node_split};
use shrink_ir::DType;
use shrink_ir::op::{Linear, Op};

type Tweak = fn(&mut IsaFacts);

const PATHS: [(&str, Tweak); 3] = [
    ("host", |_| {}),
    ("no vnni", |f| f.vnni = false),
    ("scalar", |f| f.simd = false),
];

/// Deterministic bytes (xorshift), or all `fill` when given.
fn bytes(n: usize, seed: u64, fill: Option<u8>) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            fill.unwrap_or((s >> 24) as u8)
        })
        .collect()
}

struct Case {
    a_dims: Vec<usize>,
    k: usize,
    n: usize,
    a_type: DType,
    b_type: DType,
    /// Zero points: none, one, or one per row of A / column of B.
    a_zp: Option<usize>,
    b_zp: Option<usize>,
    fill: Option<(u8, u8)>,
}

impl Case {
    fn m(&self) -> usize {
        self.a_dims[self.a_dims.len() - 2]
    }
    fn out_dims(&self) -> Vec<usize> {
        let mut d = self.a_dims.clone();
        *d.last_mut().unwrap() = self.n;
        d
    }
}

/// MatMulInteger (or QLinearMatMul with `qlinear`) of `c`, B constant (`int8`: the int8
/// kernel) or not (the loop nest), on `tweak`'s path; `threads` > 1 runs the split.
fn run(c: &Case, seed: u64, qlinear: bool, int8: bool, threads: usize, tweak: Tweak) -> Vec<u8> {
    let a = bytes(c.a_dims.iter().product(), seed, c.fill.map(|f| f.0));
    let bv = bytes(c.k * c.n, seed + 1, c.fill.map(|f| f.1));
    let mut b_in = In::new(c.b_type, &[c.k, c.n], bv);
    if int8 {
        b_in = b_in.constant();
    }
    let a_in = In::new(c.a_type, &c.a_dims, a);
    let zp = |t: DType, len: Option<usize>, s: u64| {
        len.map(|l| {
            let dims: Vec<usize> = if l == 1 { vec![] } else { vec![l] };
            In::new(t, &dims, bytes(l, s, None))
        })
    };
    let a_zp = zp(c.a_type, c.a_zp, seed + 2);
    let b_zp = zp(c.b_type, c.b_zp, seed + 3);
    let out = c.out_dims();
    let (op, ins, out_type) = if qlinear {
        let scale = |v: f32| Some(In::f32s(&[], &[v]));
        let y_zp = Some(In::new(DType::U8, &[], vec![7]));
        (
            Op::Linear(Linear::QLinearMatMul),
            vec![
                Some(a_in),
                scale(0.013),
                a_zp,
                Some(b_in),
                scale(0.021),
                b_zp,
                scale(0.37),
                y_zp,
            ],
            DType::U8,
        )
    } else {
        (
            Op::Linear(Linear::MatMulInteger),
            vec![Some(a_in), Some(b_in), a_zp, b_zp],
            DType::I32,
        )
    };
    let outs_spec = [(out_type, out.as_slice())];
    let (code, outs) = if threads > 1 {
        let (code, outs, _) = run_node_split(
            |bld, cx| lower_node(bld, &op, cx),
            &ins,
            &outs_spec,
            threads,
            tweak,
        )
        .unwrap();
        (code, outs)
    } else {
        run_node_as(|bld, cx| lower_node(bld, &op, cx), &ins, &outs_spec, tweak).unwrap()
    };
    assert_eq!(code, 0);
    outs.into_iter().next().unwrap()
}

fn cases() -> Vec<Case> {
    let mut v = vec![];
    let types = [
        (DType::U8, DType::I8),
        (DType::I8, DType::I8),
        (DType::U8, DType::U8),
        (DType::I8, DType::U8),
    ];
    for (t, &(a_type, b_type)) in types.iter().enumerate() {
        for (m, k, n) in [(1, 7, 5), (3, 33, 17), (8, 64, 40), (5, 100, 3)] {
            let zps = [(None, None), (Some(1), Some(1)), (Some(m), Some(n))];
            let (a_zp, b_zp) = zps[(t + m) % 3];
            v.push(Case {
                a_dims: vec![m, k],
                k,
                n,
                a_type,
                b_type,
                a_zp,
                b_zp,
                fill: None,
            });
        }
        // Batched A sharing B; extreme values, whose sums wrap nothing but test every bit.
        v.push(Case {
            a_dims: vec![2, 3, 45],
            k: 45,
            n: 9,
            a_type,
            b_type,
            a_zp: Some(1),
            b_zp: None,
            fill: None,
        });
        v.push(Case {
            a_dims: vec![6, 300],
            k: 300,
            n: 7,
            a_type,
            b_type,
            a_zp: None,
            b_zp: Some(7),
            fill: Some((0x80, 0xff)),
        });
    }
    v
}

#[test]
fn int8_products_give_the_loop_nests_bits_on_every_path() {
    for (i, c) in cases().iter().enumerate() {
        for qlinear in [false, true] {
            if qlinear && (c.a_zp.is_some_and(|l| l > 1) || c.a_dims.len() > 2) {
                continue; // QLinearMatMul's a parameters are per tensor here.
            }
            let want = run(c, i as u64, qlinear, false, 1, |_| {});
            for (name, tweak) in PATHS {
                let got = run(c, i as u64, qlinear, true, 1, tweak);
                assert!(
                    got == want,
                    "case {i} ({:?} {} x {}, {}x{}, zp {:?}/{:?}) qlinear={qlinear} {name}",
                    c.a_dims,
                    c.a_type,
                    c.b_type,
                    c.k,
                    c.n,
                    c.a_zp,
                    c.b_zp
                );
            }
        }
    }
}

#[test]
fn int8_products_split_across_threads_give_the_same_bits() {
    let c = Case {
        a_dims: vec![8, 512],
        k: 512,
        n: 200,
        a_type: DType::U8,
        b_type: DType::I8,
        a_zp: Some(1),
        b_zp: Some(200),
        fill: None,
    };
    assert!(c.m() * c.k * c.n >= crate::options::PARALLEL_MIN_MACS);
    let want = run(&c, 9, false, false, 1, |_| {});
    for threads in [2, 3] {
        for (name, tweak) in PATHS {
            assert!(
                run(&c, 9, false, true, threads, tweak) == want,
                "{threads} threads, {name}"
            );
        }
    }
}
