//! Unit tests of the Layout lowerings on single JIT-run kernels, for what the conformance suite
//! does not cover (error statuses, negative steps, empty tensors), and the node harness the
//! reduction tests share.
use crate::loops::{Builder, status};
use crate::ops::{LowerResult, NodeCtx};
use shrink_ir::op::{Layout, PadMode};
use shrink_ir::{DType, Tensor};

/// An input of a test node: its value, and whether the lowering may see it as a constant.
pub(crate) struct In(pub Tensor, pub bool);

/// Lowers one node with `lower` on inputs `ins` (all passed at run time; those marked constant
/// are also visible through `const_input`) and runs it: the status and each output's bytes.
pub(crate) fn run_node(
    lower: impl FnOnce(&mut Builder, &NodeCtx) -> LowerResult,
    ins: &[In],
    outs: &[(DType, &[usize])],
) -> Result<(i32, Vec<Vec<u8>>), String> {
    let ins: Vec<Option<crate::ops::op_testing::In>> = ins
        .iter()
        .map(|t| {
            let i = crate::ops::op_testing::In::new(t.0.dtype(), t.0.dims(), t.0.bytes().to_vec());
            Some(if t.1 { i.constant() } else { i })
        })
        .collect();
    crate::ops::op_testing::run_node(lower, &ins, outs)
}

fn layout(
    op: Layout,
    ins: &[In],
    outs: &[(DType, &[usize])],
) -> Result<(i32, Vec<Vec<u8>>), String> {
    run_node(|b, cx| super::lower(b, &op, cx), ins, outs)
}

pub(crate) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub(crate) fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn t<T: shrink_ir::Element>(dims: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(dims.to_vec(), v)
}

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn gather_wraps_negative_indices_and_refuses_out_of_range() {
    let data = t(&[3, 2], iota(6));
    let op = Layout::Gather { axis: 0 };
    let (code, out) = layout(
        op.clone(),
        &[In(data.clone(), false), In(t(&[2], vec![-1i64, 0]), false)],
        &[(DType::F32, &[2, 2])],
    )
    .unwrap();
    assert_eq!(code, status::OK);
    assert_eq!(f32s(&out[0]), vec![4.0, 5.0, 0.0, 1.0]);
    for bad in [3i32, -4] {
        let (code, out) = layout(
            op.clone(),
            &[In(data.clone(), false), In(t(&[2], vec![0, bad]), false)],
            &[(DType::F32, &[2, 2])],
        )
        .unwrap();
        assert_eq!(code, status::BAD_INDEX);
        // Refused before anything was written.
        assert_eq!(f32s(&out[0]), vec![0.0; 4]);
    }
}

#[test]
fn gather_inner_axis_with_2d_indices() {
    let data = t(&[2, 3], iota(6));
    let (code, out) = layout(
        Layout::Gather { axis: 1 },
        &[In(data, false), In(t(&[2, 1], vec![2i64, -3]), false)],
        &[(DType::F32, &[2, 2, 1])],
    )
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(f32s(&out[0]), vec![2.0, 0.0, 5.0, 3.0]);
}

#[test]
fn slice_negative_steps_and_clamping() {
    let data = t(&[2, 5], iota(10));
    let ins = |starts: Vec<i64>, ends: Vec<i64>, axes: Vec<i64>, steps: Vec<i64>| {
        let n = starts.len();
        vec![
            In(data.clone(), false),
            In(t(&[n], starts), true),
            In(t(&[n], ends), true),
            In(t(&[n], axes), true),
            In(t(&[n], steps), true),
        ]
    };
    // Whole axis 1 backwards by 2 from past the end, axis 0 backwards.
    let (code, out) = layout(
        Layout::Slice,
        &ins(
            vec![i64::MAX, 100],
            vec![i64::MIN, -100],
            vec![1, 0],
            vec![-2, -1],
        ),
        &[(DType::F32, &[2, 3])],
    )
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(f32s(&out[0]), vec![9.0, 7.0, 5.0, 4.0, 2.0, 0.0]);
    // An empty result writes nothing and succeeds.
    let (code, out) = layout(
        Layout::Slice,
        &ins(vec![3], vec![1], vec![1], vec![1]),
        &[(DType::F32, &[2, 0])],
    )
    .unwrap();
    assert_eq!((code, out[0].len()), (0, 0));
    // The same with every bound read at run time.
    let mut v = ins(
        vec![i64::MAX, 100],
        vec![i64::MIN, -100],
        vec![1, 0],
        vec![-2, -1],
    );
    v.iter_mut().for_each(|t| t.1 = false);
    let (code, out) = layout(Layout::Slice, &v, &[(DType::F32, &[2, 3])]).unwrap();
    assert_eq!(code, 0);
    assert_eq!(f32s(&out[0]), vec![9.0, 7.0, 5.0, 4.0, 2.0, 0.0]);
    // Run-time bounds that disagree with the static output dims, or a zero step, are refused.
    for (step, dims) in [(1i64, &[2usize, 3][..]), (0, &[2, 5][..])] {
        let mut v = ins(vec![0], vec![5], vec![1], vec![step]);
        v.iter_mut().for_each(|t| t.1 = false);
        let (code, _) = layout(Layout::Slice, &v, &[(DType::F32, dims)]).unwrap();
        assert_eq!(code, status::BAD_VALUE);
    }
}

#[test]
fn pad_modes_and_empty_input() {
    let data = t(&[1, 3], vec![1f32, 2.0, 3.0]);
    let pads = t(&[4], vec![0i64, 2, 0, 1]);
    let run = |mode, data: &Tensor, dims: &[usize]| {
        layout(
            Layout::Pad { mode },
            &[
                In(data.clone(), false),
                In(pads.clone(), true),
                In(Tensor::scalar(9f32), false),
            ],
            &[(DType::F32, dims)],
        )
        .unwrap()
    };
    let got = |mode| f32s(&run(mode, &data, &[1, 6]).1[0]);
    // The same with the pads read at run time.
    let got_rt = |mode| {
        let ins = [
            In(data.clone(), false),
            In(pads.clone(), false),
            In(Tensor::scalar(9f32), false),
        ];
        let (code, out) = layout(Layout::Pad { mode }, &ins, &[(DType::F32, &[1, 6])]).unwrap();
        assert_eq!(code, 0);
        f32s(&out[0])
    };
    for (mode, want) in [
        (PadMode::Constant, vec![9.0, 9.0, 1.0, 2.0, 3.0, 9.0]),
        (PadMode::Edge, vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0]),
        (PadMode::Reflect, vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]),
        (PadMode::Wrap, vec![2.0, 3.0, 1.0, 2.0, 3.0, 1.0]),
    ] {
        assert_eq!(got(mode), want, "{mode:?}");
        assert_eq!(got_rt(mode), want, "{mode:?} at run time");
    }
    // Padding an empty axis with a constant writes only the constant.
    let empty = t(&[1, 0], Vec::<f32>::new());
    let (code, out) = run(PadMode::Constant, &empty, &[1, 3]);
    assert_eq!((code, f32s(&out[0])), (0, vec![9.0; 3]));
    // Negative pads crop first; the constant defaults to zero.
    let (code, out) = layout(
        Layout::Pad {
            mode: PadMode::Constant,
        },
        &[
            In(data.clone(), false),
            In(t(&[4], vec![0i64, -1, 0, 1]), true),
        ],
        &[(DType::F32, &[1, 3])],
    )
    .unwrap();
    assert_eq!((code, f32s(&out[0])), (0, vec![2.0, 3.0, 0.0]));
}

#[test]
fn transpose_concat_split_tile_expand() {
    let x = t(&[2, 3], iota(6));
    let (_, out) = layout(
        Layout::Transpose { perm: None },
        &[In(x.clone(), false)],
        &[(DType::F32, &[3, 2])],
    )
    .unwrap();
    assert_eq!(f32s(&out[0]), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let (_, out) = layout(
        Layout::Concat { axis: 1 },
        &[In(x.clone(), false), In(t(&[2, 1], vec![7f32, 8.0]), false)],
        &[(DType::F32, &[2, 4])],
    )
    .unwrap();
    assert_eq!(f32s(&out[0]), vec![0.0, 1.0, 2.0, 7.0, 3.0, 4.0, 5.0, 8.0]);
    let (_, out) = layout(
        Layout::Split {
            axis: 1,
            num_outputs: None,
        },
        &[In(x.clone(), false)],
        &[
            (DType::F32, &[2, 2]),
            (DType::F32, &[2, 0]),
            (DType::F32, &[2, 1]),
        ],
    )
    .unwrap();
    assert_eq!(f32s(&out[0]), vec![0.0, 1.0, 3.0, 4.0]);
    assert!(out[1].is_empty());
    assert_eq!(f32s(&out[2]), vec![2.0, 5.0]);
    let (_, out) = layout(
        Layout::Tile,
        &[
            In(t(&[2], vec![1f32, 2.0]), false),
            In(t(&[1], vec![2i64]), false),
        ],
        &[(DType::F32, &[4])],
    )
    .unwrap();
    assert_eq!(f32s(&out[0]), vec![1.0, 2.0, 1.0, 2.0]);
    let (_, out) = layout(
        Layout::Expand,
        &[
            In(t(&[2, 1], vec![1f32, 2.0]), false),
            In(t(&[2], vec![2i64, 2]), false),
        ],
        &[(DType::F32, &[2, 2])],
    )
    .unwrap();
    assert_eq!(f32s(&out[0]), vec![1.0, 1.0, 2.0, 2.0]);
}

#[test]
fn shape_constant_of_shape_and_range() {
    let x = t(&[2, 3, 4], iota(24));
    let (_, out) = layout(
        Layout::Shape {
            start: -2,
            end: None,
        },
        &[In(x, false)],
        &[(DType::I64, &[2])],
    )
    .unwrap();
    assert_eq!(i64s(&out[0]), vec![3, 4]);
    let (_, out) = layout(
        Layout::ConstantOfShape {
            value: Some(t(&[1], vec![-5i64])),
        },
        &[In(t(&[1], vec![3i64]), true)],
        &[(DType::I64, &[3])],
    )
    .unwrap();
    assert_eq!(i64s(&out[0]), vec![-5; 3]);
    let (_, out) = layout(
        Layout::Range,
        &[
            In(Tensor::scalar(10i64), false),
            In(Tensor::scalar(4i64), false),
            In(Tensor::scalar(-3i64), false),
        ],
        &[(DType::I64, &[2])],
    )
    .unwrap();
    assert_eq!(i64s(&out[0]), vec![10, 7]);
}

#[test]
fn gather_with_nothing_to_gather_checks_no_index() {
    // The interpreter produces the empty result without looking at the indices.
    let data = t(&[2, 0], Vec::<f32>::new());
    let (code, out) = layout(
        Layout::Gather { axis: 0 },
        &[In(data, false), In(t(&[1], vec![7i64]), false)],
        &[(DType::F32, &[1, 0])],
    )
    .unwrap();
    assert_eq!((code, out[0].len()), (0, 0));
    // An empty axis with indices to look up refuses every index.
    let data = t(&[0, 2], Vec::<f32>::new());
    let (code, _) = layout(
        Layout::Gather { axis: 0 },
        &[In(data, false), In(t(&[1], vec![0i64]), false)],
        &[(DType::F32, &[1, 2])],
    )
    .unwrap();
    assert_eq!(code, status::BAD_INDEX);
}
