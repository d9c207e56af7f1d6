//! Integer convolutions on the int8 kernel against the loop nest (the same op with the filters
//! not marked constant, which the kernel does not take), bit for bit: both signednesses, zero
//! points per tensor and per filter (padding unfolds to the input's zero point), pads, strides,
//! dilations, 1-D and 2-D windows, batches, QLinearConv's bias and requantization, every
//! emission path and a split across threads.
use crate::loops::emit::IsaFacts;
use crate::ops::lower_node;
use crate::ops::op_testing::{In, run_node_as, run_node_split};
use shrink_ir::DType;
use shrink_ir::op::{Conv, Op};

type Tweak = fn(&mut IsaFacts);

const PATHS: [(&str, Tweak); 3] = [
    ("host", |_| {}),
    ("no vnni", |f| f.vnni = false),
    ("scalar", |f| f.simd = false),
];

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

struct Case {
    /// `[N, C, spatial..]` and `[M, C, kernel..]`.
    x: Vec<usize>,
    w: Vec<usize>,
    pads: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    types: (DType, DType),
    /// Zero points: x's (one value) and w's (none, one or one per filter).
    x_zp: bool,
    w_zp: Option<usize>,
}

impl Case {
    fn out_dims(&self) -> Vec<usize> {
        let rank = self.x.len() - 2;
        let mut d = vec![self.x[0], self.w[0]];
        for a in 0..rank {
            let (i, k) = (self.x[2 + a] as i64, self.w[2 + a] as i64);
            let span = self.dilations[a] * (k - 1) + 1;
            let padded = i + self.pads[a] + self.pads[rank + a];
            d.push(((padded - span) / self.strides[a] + 1) as usize);
        }
        d
    }
}

fn run(c: &Case, seed: u64, qlinear: bool, int8: bool, threads: usize, tweak: Tweak) -> Vec<u8> {
    let (xt, wt) = c.types;
    let x = In::new(xt, &c.x, bytes(c.x.iter().product(), seed));
    let mut w = In::new(wt, &c.w, bytes(c.w.iter().product(), seed + 1));
    if int8 {
        w = w.constant();
    }
    let x_zp = c.x_zp.then(|| In::new(xt, &[], bytes(1, seed + 2)));
    let w_zp = c.w_zp.map(|l| {
        let dims: Vec<usize> = if l == 1 { vec![] } else { vec![l] };
        In::new(wt, &dims, bytes(l, seed + 3))
    });
    let attrs = (
        c.pads.clone(),
        c.strides.clone(),
        c.dilations.clone(),
        c.w[2..].iter().map(|&k| k as i64).collect::<Vec<_>>(),
    );
    let out = c.out_dims();
    let (op, ins, out_type) = if qlinear {
        let scale = |v: f32| Some(In::f32s(&[], &[v]));
        let m = c.w[0];
        let bias: Vec<u8> = (0..m as i32)
            .flat_map(|f| (f * 977 - 3000).to_le_bytes())
            .collect();
        (
            Op::Conv(Conv::QLinearConv {
                auto_pad: shrink_ir::op::AutoPad::NotSet,
                dilations: attrs.2,
                group: 1,
                kernel_shape: attrs.3,
                pads: attrs.0,
                strides: attrs.1,
            }),
            vec![
                Some(x),
                scale(0.013),
                x_zp,
                Some(w),
                scale(0.021),
                w_zp,
                scale(0.37),
                Some(In::new(DType::U8, &[], vec![7])),
                Some(In::new(DType::I32, &[m], bias)),
            ],
            DType::U8,
        )
    } else {
        (
            Op::Conv(Conv::ConvInteger {
                auto_pad: shrink_ir::op::AutoPad::NotSet,
                dilations: attrs.2,
                group: 1,
                kernel_shape: attrs.3,
                pads: attrs.0,
                strides: attrs.1,
            }),
            vec![Some(x), Some(w), x_zp, w_zp],
            DType::I32,
        )
    };
    let outs_spec = [(out_type, out.as_slice())];
    let lower = |bld: &mut crate::loops::Builder, cx: &crate::ops::NodeCtx| {
        let r = lower_node(bld, &op, cx);
        // The int8 kernel names its form; the loop nest does not.
        assert_eq!(
            bld.form() == Some("int8"),
            int8,
            "int8 kernel taken: {int8}"
        );
        r
    };
    let (code, outs) = if threads > 1 {
        let (code, outs, _) = run_node_split(lower, &ins, &outs_spec, threads, tweak).unwrap();
        (code, outs)
    } else {
        run_node_as(lower, &ins, &outs_spec, tweak).unwrap()
    };
    assert_eq!(code, 0);
    outs.into_iter().next().unwrap()
}

fn cases() -> Vec<Case> {
    let types = [
        (DType::U8, DType::I8),
        (DType::I8, DType::I8),
        (DType::U8, DType::U8),
        (DType::I8, DType::U8),
    ];
    let mut v = vec![];
    for (t, &ty) in types.iter().enumerate() {
        // 2-D, padded on every side, with stride and dilation; zero points vary per case.
        v.push(Case {
            x: vec![2, 3, 9, 8],
            w: vec![5, 3, 3, 3],
            pads: vec![1, 2, 1, 0],
            strides: vec![2, 1],
            dilations: vec![1, 2],
            types: ty,
            x_zp: t % 2 == 0,
            w_zp: [None, Some(1), Some(5), Some(5)][t],
        });
        // 1-D, unpadded, many filters.
        v.push(Case {
            x: vec![1, 4, 30],
            w: vec![33, 4, 5],
            pads: vec![0, 0],
            strides: vec![1],
            dilations: vec![1],
            types: ty,
            x_zp: true,
            w_zp: Some(33),
        });
        // A pointwise (1x1) convolution with a deep input.
        v.push(Case {
            x: vec![1, 70, 4, 4],
            w: vec![9, 70, 1, 1],
            pads: vec![0, 0, 0, 0],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            types: ty,
            x_zp: t % 2 == 1,
            w_zp: None,
        });
    }
    v
}

#[test]
fn integer_convolutions_give_the_loop_nests_bits_on_every_path() {
    for (i, c) in cases().iter().enumerate() {
        for qlinear in [false, true] {
            let want = run(c, i as u64, qlinear, false, 1, |_| {});
            for (name, tweak) in PATHS {
                let got = run(c, i as u64, qlinear, true, 1, tweak);
                assert!(
                    got == want,
                    "case {i} (x {:?} w {:?} {:?}) qlinear={qlinear} {name}",
                    c.x,
                    c.w,
                    c.types
                );
            }
        }
    }
}

#[test]
fn integer_convolutions_split_across_threads_give_the_same_bits() {
    // Large enough to be split: 64 filters × 4·36 inputs × 56² positions.
    let c = Case {
        x: vec![1, 16, 58, 58],
        w: vec![64, 16, 3, 3],
        pads: vec![0, 0, 0, 0],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        types: (DType::U8, DType::I8),
        x_zp: true,
        w_zp: Some(64),
    };
    let want = run(&c, 5, false, true, 1, |_| {});
    for threads in [2, 3] {
        let got = run(&c, 5, false, true, threads, |_| {});
        assert!(got == want, "{threads} threads");
    }
}
