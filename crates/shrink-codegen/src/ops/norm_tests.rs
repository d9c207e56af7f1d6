//! Unit tests of the Norm and Transformer lowerings on edge cases the ONNX node suite lacks:
//! softmax rows with -inf, huge and NaN values, LayerNorm over several trailing axes with
//! broadcast parameters and its statistics outputs, RotaryEmbedding's position-id check.
//! Each test JIT-runs the single node's kernel (`run_kernel`) and checks values.
use crate::loops::status;
use shrink_ir::op::{Norm, Transformer};
use shrink_ir::{DType, Op};

/// An input of the node under test: dtype, dims, little-endian bytes.
struct In(DType, Vec<usize>, Vec<u8>);

fn f32s(dims: &[usize], v: &[f32]) -> In {
    assert_eq!(dims.iter().product::<usize>(), v.len());
    In(
        DType::F32,
        dims.to_vec(),
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn i64s(dims: &[usize], v: &[i64]) -> In {
    In(
        DType::I64,
        dims.to_vec(),
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// Lowers `op` over `ins` (`None` = absent optional input) with f32 outputs of `outs` dims and
/// runs it: the status and each output as f32s.
fn run(op: Op, ins: &[Option<In>], outs: &[&[usize]]) -> (i32, Vec<Vec<f32>>) {
    let ins: Vec<Option<crate::ops::op_testing::In>> = ins
        .iter()
        .map(|t| {
            t.as_ref()
                .map(|In(d, dims, data)| crate::ops::op_testing::In::new(*d, dims, data.clone()))
        })
        .collect();
    let outs: Vec<(DType, &[usize])> = outs.iter().map(|d| (DType::F32, *d)).collect();
    let (code, outs) = crate::ops::op_testing::run_op(&op, &ins, &outs);
    let outs = outs
        .iter()
        .map(|b| {
            b.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect();
    (code, outs)
}

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            *g as f64 == *w
        } else {
            (*g as f64 - w).abs() <= 1e-6 + 1e-5 * w.abs()
        };
        assert!(ok, "{got:?} vs {want:?}");
    }
}

fn softmax(axis: i64, coerce_2d: bool) -> Op {
    Op::Norm(Norm::Softmax { axis, coerce_2d })
}

#[test]
fn softmax_rows_with_infinities_huge_values_and_nan() {
    let inf = f32::INFINITY;
    let x = [
        // -inf contributes 0; the two maxima share the mass; exp(-1000) underflows to 0.
        -inf,
        1000.0,
        1000.0,
        0.0, //
        // Near f32::MAX: subtracting the max keeps exp finite.
        3.0e38,
        3.0e38,
        -3.0e38,
        -inf, //
        // NaN anywhere makes the whole row NaN.
        1.0,
        f32::NAN,
        2.0,
        3.0, //
        // A row of -inf: -inf - -inf is NaN, as in the interpreter.
        -inf,
        -inf,
        -inf,
        -inf,
    ];
    let (code, y) = run(softmax(-1, false), &[Some(f32s(&[4, 4], &x))], &[&[4, 4]]);
    assert_eq!(code, status::OK);
    let nan = f64::NAN;
    close(
        &y[0],
        &[
            0.0, 0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, nan, nan, nan, nan, nan, nan, nan, nan,
        ],
    );
    let op = Op::Norm(Norm::LogSoftmax {
        axis: 1,
        coerce_2d: false,
    });
    let (_, y) = run(
        op,
        &[Some(f32s(&[2, 3], &[-inf, 0.0, 0.0, 500.0, 0.0, 500.0]))],
        &[&[2, 3]],
    );
    let l2 = 2f64.ln();
    close(&y[0], &[f64::NEG_INFINITY, -l2, -l2, -l2, -500.0 - l2, -l2]);
}

#[test]
fn softmax_inner_axis_and_coerce_2d() {
    // Axis 0 of [2, 3]: groups are columns.
    let x = [0.0, 1.0, 2.0, 0.0, 3.0, 2.0];
    let (_, y) = run(softmax(0, false), &[Some(f32s(&[2, 3], &x))], &[&[2, 3]]);
    let s = |a: f64, b: f64| a.exp() / (a.exp() + b.exp());
    close(&y[0], &[0.5, s(1.0, 3.0), 0.5, 0.5, s(3.0, 1.0), 0.5]);
    // coerce_2d at axis == rank: every element is its own group.
    let (_, y) = run(softmax(2, true), &[Some(f32s(&[2, 3], &x))], &[&[2, 3]]);
    close(&y[0], &[1.0; 6]);
    // coerce_2d at axis 0: the whole tensor is one group.
    let (_, y) = run(
        softmax(0, true),
        &[Some(f32s(&[2, 2], &[0.0; 4]))],
        &[&[2, 2]],
    );
    close(&y[0], &[0.25; 4]);
}

/// LayerNorm of `x` over rows of `len`, with full-shape `scale`/`bias`, plus mean and inv std.
fn layer_norm_ref(
    x: &[f32],
    len: usize,
    scale: &[f64],
    bias: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut means, mut invs) = (vec![], vec![], vec![]);
    for (r, row) in x.chunks(len).enumerate() {
        let n = len as f64;
        let m = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let i = r * len + j;
            y.push((v as f64 - m) * inv * scale[i] + bias[i]);
        }
        means.push(m);
        invs.push(inv);
    }
    (y, means, invs)
}

#[test]
fn layer_norm_over_two_trailing_axes_with_broadcast_params_and_stats() {
    // X [2, 2, 3] normalized over its last two axes (axis 1): Scale [2, 3], B [3] broadcast.
    let x: Vec<f32> = (0..12)
        .map(|i| ((i * 7) % 5) as f32 - 1.5 * i as f32)
        .collect();
    let scale: Vec<f32> = (0..6).map(|i| 0.5 + i as f32).collect();
    let bias = [1.0f32, -2.0, 0.25];
    let op = Op::Norm(Norm::LayerNormalization {
        axis: -2,
        epsilon: 1e-3,
        stash_type: 1,
    });
    let (code, y) = run(
        op,
        &[
            Some(f32s(&[2, 2, 3], &x)),
            Some(f32s(&[2, 3], &scale)),
            Some(f32s(&[3], &bias)),
        ],
        &[&[2, 2, 3], &[2, 1, 1], &[2, 1, 1]],
    );
    assert_eq!(code, status::OK);
    let full_scale: Vec<f64> = (0..12).map(|i| scale[i % 6] as f64).collect();
    let full_bias: Vec<f64> = (0..12).map(|i| bias[i % 3] as f64).collect();
    let (want, means, invs) = layer_norm_ref(&x, 6, &full_scale, &full_bias, 1e-3f32 as f64);
    close(&y[0], &want);
    close(&y[1], &means);
    close(&y[2], &invs);

    // Axis 0 with no bias: one group over everything, a [1, 1, 3] scale broadcast over rows.
    let op = Op::Norm(Norm::LayerNormalization {
        axis: 0,
        epsilon: 0.0,
        stash_type: 1,
    });
    let (_, y) = run(
        op,
        &[
            Some(f32s(&[2, 2, 3], &x)),
            Some(f32s(&[1, 1, 3], &bias)),
            None,
        ],
        &[&[2, 2, 3]],
    );
    let full_scale: Vec<f64> = (0..12).map(|i| bias[i % 3] as f64).collect();
    let (want, _, _) = layer_norm_ref(&x, 12, &full_scale, &[0.0; 12], 0.0);
    close(&y[0], &want);
}

#[test]
fn rms_norm_over_trailing_axes() {
    let x = [3.0f32, 4.0, 0.0, 0.0, 1.0, -1.0, 2.0, 2.0];
    let op = Op::Norm(Norm::RMSNormalization {
        axis: 1,
        epsilon: 0.0,
        stash_type: 1,
    });
    let (_, y) = run(
        op,
        &[Some(f32s(&[2, 2, 2], &x)), Some(f32s(&[2], &[1.0, 2.0]))],
        &[&[2, 2, 2]],
    );
    let r0 = (25.0f64 / 4.0).sqrt();
    let r1 = (10.0f64 / 4.0).sqrt();
    close(
        &y[0],
        &[
            3.0 / r0,
            8.0 / r0,
            0.0,
            0.0,
            1.0 / r1,
            -2.0 / r1,
            2.0 / r1,
            4.0 / r1,
        ],
    );
}

#[test]
fn rotary_position_ids_are_checked_at_run_time() {
    // [batch 1, seq 2, hidden 4], 2 heads of size 2, cache of 2 positions (half 1).
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let op = || {
        Op::Transformer(Transformer::RotaryEmbedding {
            interleaved: false,
            num_heads: Some(2),
            rotary_embedding_dim: 0,
        })
    };
    let ins = |ids: &[i64]| {
        vec![
            Some(f32s(&[1, 2, 4], &x)),
            Some(f32s(&[2, 1], &[1.0, 0.0])),
            Some(f32s(&[2, 1], &[0.0, 1.0])),
            Some(i64s(&[1, 2], ids)),
        ]
    };
    // Position 1 turns by 90°, position 0 not at all.
    let (code, y) = run(op(), &ins(&[1, 0]), &[&[1, 2, 4]]);
    assert_eq!(code, status::OK);
    close(&y[0], &[-2.0, 1.0, -4.0, 3.0, 5.0, 6.0, 7.0, 8.0]);
    for bad in [[0, 2], [-1, 0]] {
        let (code, _) = run(op(), &ins(&bad), &[&[1, 2, 4]]);
        assert_eq!(code, status::BAD_INDEX, "ids {bad:?}");
    }
}

#[test]
fn swiglu_saturates_without_nan() {
    let op = Op::Transformer(Transformer::SwiGLU { alpha: 1.702 });
    let a = [-1000.0f32, 0.0, 2.0, 1000.0];
    let g = [3.0f32, 5.0, 0.5, 2.0];
    let (_, y) = run(op, &[Some(f32s(&[4], &a)), Some(f32s(&[4], &g))], &[&[4]]);
    let want: Vec<f64> = a
        .iter()
        .zip(&g)
        .map(|(&a, &g)| {
            let a = a as f64;
            a / (1.0 + (-(1.702f32 as f64) * a).exp()) * g as f64
        })
        .collect();
    close(&y[0], &want);
    assert_eq!(y[0][0], 0.0);
}
