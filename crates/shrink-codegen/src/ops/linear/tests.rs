//! Unit tests of the Linear family for what the ONNX node suite does not cover (DenseAct with
//! bias and activation, Gemm with both transposes, integer wrapping, tails of the column tile),
//! and the helper that JIT-runs one op on byte buffers, shared with the conv and pool tests.
use shrink_ir::op::{Fused, Linear, Unary};
use shrink_ir::{DType, Op};

/// An input of a test: dtype, dims, raw little-endian bytes.
pub struct In(pub DType, pub Vec<usize>, pub Vec<u8>);

pub fn f32s(dims: &[usize], v: &[f32]) -> In {
    In(
        DType::F32,
        dims.to_vec(),
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub fn to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Lowers `op` with the given inputs (`None` = absent optional) and output dtypes/dims, runs it
/// and returns the status and the output bytes.
pub fn run_op(op: &Op, ins: &[Option<In>], outs: &[(DType, Vec<usize>)]) -> (i32, Vec<Vec<u8>>) {
    let ins: Vec<Option<crate::ops::op_testing::In>> = ins
        .iter()
        .map(|t| {
            t.as_ref()
                .map(|In(d, dims, bytes)| crate::ops::op_testing::In::new(*d, dims, bytes.clone()))
        })
        .collect();
    let outs: Vec<(DType, &[usize])> = outs.iter().map(|(d, v)| (*d, v.as_slice())).collect();
    crate::ops::op_testing::run_op(op, &ins, &outs)
}

fn iota(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 - n as f32 / 2.0) * scale)
        .collect()
}

/// Reference f64 matmul of row-major [m, k] x [k, n].
fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
        }
    }
    y
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|f| v[(f % rows) * cols + f / rows])
        .collect()
}

#[test]
fn dense_act_with_bias_and_relu_over_a_partial_tile() {
    // n = 11: one full tile of 8 columns and a tail of 3; W stored transposed.
    let (m, k, n) = (3, 5, 11);
    let x = iota(m * k, 0.5);
    let w = iota(k * n, 0.25);
    let bias = iota(n, 1.0);
    let op = Op::Fused(Fused::DenseAct {
        trans_b: true,
        activation: Some(Unary::Relu),
    });
    let (code, outs) = run_op(
        &op,
        &[
            Some(f32s(&[m, k], &x)),
            Some(f32s(&[n, k], &transpose(&w, k, n))),
            Some(f32s(&[n], &bias)),
        ],
        &[(DType::F32, vec![m, n])],
    );
    assert_eq!(code, 0);
    let want: Vec<f32> = reference(&x, &w, m, k, n)
        .iter()
        .enumerate()
        .map(|(f, &v)| ((v as f32) + bias[f % n]).max(0.0))
        .collect();
    assert_eq!(to_f32(&outs[0]), want);
    assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
}

#[test]
fn gemm_with_both_transposes_alpha_beta_and_row_c() {
    let (m, k, n) = (2, 3, 9);
    let a = iota(m * k, 1.0);
    let bm = iota(k * n, 0.5);
    let c = iota(m, 3.0);
    let op = Op::Linear(Linear::Gemm {
        alpha: 2.0,
        beta: 0.5,
        trans_a: true,
        trans_b: true,
    });
    let (code, outs) = run_op(
        &op,
        &[
            Some(f32s(&[k, m], &transpose(&a, m, k))),
            Some(f32s(&[n, k], &transpose(&bm, k, n))),
            // C of shape [m, 1] broadcasts along the columns.
            Some(f32s(&[m, 1], &c)),
        ],
        &[(DType::F32, vec![m, n])],
    );
    assert_eq!(code, 0);
    let want: Vec<f32> = reference(&a, &bm, m, k, n)
        .iter()
        .enumerate()
        .map(|(f, &v)| (2.0 * v + 0.5 * c[f / n] as f64) as f32)
        .collect();
    assert_eq!(to_f32(&outs[0]), want);
}

#[test]
fn integer_matmul_wraps_and_batches_broadcast() {
    // [2, 1, 2] x [2, 1]: i32::MAX * 2 + 2 wraps; the second batch is small.
    let a: Vec<i32> = vec![i32::MAX, 1, 3, 4];
    let b: Vec<i32> = vec![2, 2];
    let bytes = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (code, outs) = run_op(
        &Op::Linear(Linear::MatMul),
        &[
            Some(In(DType::I32, vec![2, 1, 2], bytes(&a))),
            Some(In(DType::I32, vec![2, 1], bytes(&b))),
        ],
        &[(DType::I32, vec![2, 1, 1])],
    );
    assert_eq!(code, 0);
    let got: Vec<i32> = outs[0]
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, vec![i32::MAX.wrapping_mul(2).wrapping_add(2), 14]);
    // i8 wraps in i8: 100 * 2 + 100 * 1 = 300 -> 44.
    let (code, outs) = run_op(
        &Op::Linear(Linear::MatMul),
        &[
            Some(In(DType::I8, vec![1, 2], vec![100, 100])),
            Some(In(DType::I8, vec![2], vec![2, 1])),
        ],
        &[(DType::I8, vec![1])],
    );
    assert_eq!(code, 0);
    assert_eq!(outs[0][0] as i8, 300i32 as i8);
}
