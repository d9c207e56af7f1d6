//! Hand-computed cases for the Layout family, focused on the spec's corner cases (clamping,
//! negative pads, sentinels, errors instead of panics) and on dtypes the conformance suite
//! does not cover.
use super::eval;
use crate::{EvalCtx, EvalError};
use shrink_ir::op::{Layout, PadMode};
use shrink_ir::{DType, Tensor, ValueType};

fn run(
    op: Layout,
    ins: &[Option<&Tensor>],
    out: DType,
    n_outs: usize,
) -> Result<Vec<Tensor>, EvalError> {
    let outs: Vec<ValueType> = (0..n_outs).map(|_| ValueType::unknown_shape(out)).collect();
    eval(&op, ins, &outs, &EvalCtx::default())
}

fn run1(op: Layout, ins: &[&Tensor], out: DType) -> Result<Tensor, EvalError> {
    let ins: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
    run(op, &ins, out, 1).map(|mut v| v.remove(0))
}

fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(dims.to_vec(), v.to_vec())
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec())
}

fn iota(dims: &[usize]) -> Tensor {
    let n = dims.iter().product::<usize>();
    f32s(dims, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().expect("f32 output")
}

#[test]
fn reshape_zero_copies_unless_allowzero() {
    let x = iota(&[2, 3, 4]);
    let y = run1(
        Layout::Reshape { allowzero: false },
        &[&x, &i64s(&[0, -1])],
        DType::F32,
    )
    .unwrap();
    assert_eq!(y.dims(), &[2, 12]);
    let e = iota(&[0, 3]);
    let y = run1(
        Layout::Reshape { allowzero: true },
        &[&e, &i64s(&[3, 0])],
        DType::F32,
    )
    .unwrap();
    assert_eq!(y.dims(), &[3, 0]);
    assert!(
        run1(
            Layout::Reshape { allowzero: true },
            &[&e, &i64s(&[0, -1])],
            DType::F32
        )
        .is_err()
    );
    assert!(
        run1(
            Layout::Reshape { allowzero: false },
            &[&x, &i64s(&[5, -1])],
            DType::F32
        )
        .is_err()
    );
    assert!(
        run1(
            Layout::Reshape { allowzero: false },
            &[&x, &i64s(&[-1, -1])],
            DType::F32
        )
        .is_err()
    );
    assert!(
        run1(
            Layout::Reshape { allowzero: false },
            &[&x, &i64s(&[0, 0, 0, 0])],
            DType::F32
        )
        .is_err()
    );
}

#[test]
fn squeeze_and_unsqueeze() {
    let x = iota(&[1, 3, 1]);
    let ins = [Some(&x), None];
    assert_eq!(
        run(Layout::Squeeze, &ins, DType::F32, 1).unwrap()[0].dims(),
        &[3]
    );
    assert_eq!(
        run1(Layout::Squeeze, &[&x, &i64s(&[-1])], DType::F32)
            .unwrap()
            .dims(),
        &[1, 3]
    );
    assert!(run1(Layout::Squeeze, &[&x, &i64s(&[1])], DType::F32).is_err());
    let y = run1(
        Layout::Unsqueeze,
        &[&iota(&[3, 4]), &i64s(&[-1, 0])],
        DType::F32,
    )
    .unwrap();
    assert_eq!(y.dims(), &[1, 3, 4, 1]);
    assert!(run1(Layout::Unsqueeze, &[&x, &i64s(&[0, 0])], DType::F32).is_err());
}

#[test]
fn shape_clamps_start_and_end() {
    let x = iota(&[2, 3, 4]);
    let shape = |start, end| {
        run1(Layout::Shape { start, end }, &[&x], DType::I64)
            .unwrap()
            .to_i64_vec()
    };
    assert_eq!(shape(-10, None), vec![2, 3, 4]);
    assert_eq!(shape(1, Some(-1)), vec![3]);
    assert_eq!(shape(2, Some(1)), Vec::<i64>::new());
    assert_eq!(shape(0, Some(100)), vec![2, 3, 4]);
}

#[test]
fn transpose_moves_narrow_dtypes() {
    let x = Tensor::from_bits(DType::F8E4M3FN, vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
    let y = run1(Layout::Transpose { perm: None }, &[&x], DType::F8E4M3FN).unwrap();
    assert_eq!((y.dtype(), y.dims()), (DType::F8E4M3FN, &[3usize, 2][..]));
    assert_eq!(y.to_vec::<u8>().unwrap(), vec![1, 4, 2, 5, 3, 6]);
    assert!(
        run1(
            Layout::Transpose {
                perm: Some(vec![0, 0])
            },
            &[&x],
            DType::F8E4M3FN
        )
        .is_err()
    );
    assert!(
        run1(
            Layout::Transpose {
                perm: Some(vec![0])
            },
            &[&x],
            DType::F8E4M3FN
        )
        .is_err()
    );
}

#[test]
fn concat_bool_and_mismatch() {
    let a = Tensor::from_vec(vec![1, 2], vec![true, false]);
    let b = Tensor::from_vec(vec![1, 1], vec![true]);
    let y = run1(Layout::Concat { axis: -1 }, &[&a, &b], DType::Bool).unwrap();
    assert_eq!(y.to_vec::<bool>().unwrap(), vec![true, false, true]);
    assert!(run1(Layout::Concat { axis: 0 }, &[&a, &b], DType::Bool).is_err());
}

#[test]
fn gather_wraps_negative_and_rejects_out_of_range() {
    let x = iota(&[3, 2]);
    let idx = Tensor::from_vec(vec![2], vec![-1i32, 0]);
    let y = run1(Layout::Gather { axis: 0 }, &[&x, &idx], DType::F32).unwrap();
    assert_eq!(vals(&y), vec![4., 5., 0., 1.]);
    let y = run1(
        Layout::Gather { axis: 1 },
        &[&x, &Tensor::scalar(1i64)],
        DType::F32,
    )
    .unwrap();
    assert_eq!((y.dims(), vals(&y)), (&[3usize][..], vec![1., 3., 5.]));
    for bad in [3i64, -4] {
        let r = run1(
            Layout::Gather { axis: 0 },
            &[&x, &Tensor::scalar(bad)],
            DType::F32,
        );
        assert!(matches!(r, Err(EvalError::Invalid(_))), "{bad}: {r:?}");
    }
}

#[test]
fn slice_sentinels_and_negative_steps() {
    let x = iota(&[5]);
    let slice = |s: i64, e: i64, st: i64| {
        vals(
            &run1(
                Layout::Slice,
                &[&x, &i64s(&[s]), &i64s(&[e]), &i64s(&[0]), &i64s(&[st])],
                DType::F32,
            )
            .unwrap(),
        )
    };
    assert_eq!(slice(1, i64::MAX, 1), vec![1., 2., 3., 4.]);
    assert_eq!(slice(-1, i64::MIN, -1), vec![4., 3., 2., 1., 0.]);
    assert_eq!(slice(10, -10, -2), vec![4., 2., 0.]);
    assert_eq!(slice(3, 1, 1), Vec::<f32>::new());
    assert_eq!(slice(0, 5, i64::MIN), Vec::<f32>::new());
    assert_eq!(slice(4, 0, i64::MIN), vec![4.]);
    assert!(
        run1(
            Layout::Slice,
            &[&x, &i64s(&[0]), &i64s(&[1]), &i64s(&[0]), &i64s(&[0])],
            DType::F32
        )
        .is_err()
    );
}

#[test]
fn split_sizes_and_uneven_chunks() {
    let x = iota(&[5]);
    let ins = [Some(&x), None];
    let r = run(
        Layout::Split {
            axis: 0,
            num_outputs: Some(3),
        },
        &ins,
        DType::F32,
        3,
    )
    .unwrap();
    assert_eq!(
        r.iter().map(vals).collect::<Vec<_>>(),
        vec![vec![0., 1.], vec![2., 3.], vec![4.]]
    );
    // ceil(5 / 4) = 2 leaves a negative last chunk.
    assert!(
        run(
            Layout::Split {
                axis: 0,
                num_outputs: Some(4)
            },
            &ins,
            DType::F32,
            4
        )
        .is_err()
    );
    // Without num_outputs the parts must be equal.
    assert!(
        run(
            Layout::Split {
                axis: 0,
                num_outputs: None
            },
            &ins,
            DType::F32,
            2
        )
        .is_err()
    );
    let sizes = i64s(&[4, 1]);
    let r = run(
        Layout::Split {
            axis: -1,
            num_outputs: None,
        },
        &[Some(&x), Some(&sizes)],
        DType::F32,
        2,
    )
    .unwrap();
    assert_eq!(vals(&r[1]), vec![4.]);
    let sizes = i64s(&[4, 2]);
    assert!(
        run(
            Layout::Split {
                axis: 0,
                num_outputs: None
            },
            &[Some(&x), Some(&sizes)],
            DType::F32,
            2
        )
        .is_err()
    );
}

#[test]
fn expand_and_tile() {
    let x = f32s(&[3, 1], &[1., 2., 3.]);
    let y = run1(Layout::Expand, &[&x, &i64s(&[2, 1, 2])], DType::F32).unwrap();
    assert_eq!(y.dims(), &[2, 3, 2]);
    assert_eq!(
        vals(&y),
        vec![1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]
    );
    assert!(run1(Layout::Expand, &[&x, &i64s(&[2, 2])], DType::F32).is_err());
    let y = run1(
        Layout::Tile,
        &[&f32s(&[2], &[1., 2.]), &i64s(&[3])],
        DType::F32,
    )
    .unwrap();
    assert_eq!(vals(&y), vec![1., 2., 1., 2., 1., 2.]);
    assert!(run1(Layout::Tile, &[&x, &i64s(&[2])], DType::F32).is_err());
}

#[test]
fn pad_modes() {
    let x = f32s(&[4], &[1., 2., 3., 4.]);
    let pad = |mode, pads: &[i64]| {
        vals(&run1(Layout::Pad { mode }, &[&x, &i64s(pads)], DType::F32).unwrap())
    };
    assert_eq!(
        pad(PadMode::Constant, &[1, 2]),
        vec![0., 1., 2., 3., 4., 0., 0.]
    );
    assert_eq!(
        pad(PadMode::Edge, &[2, 1]),
        vec![1., 1., 1., 2., 3., 4., 4.]
    );
    // Larger than the axis: numpy keeps reflecting.
    assert_eq!(
        pad(PadMode::Reflect, &[5, 0]),
        vec![2., 3., 4., 3., 2., 1., 2., 3., 4.]
    );
    assert_eq!(
        pad(PadMode::Wrap, &[5, 2]),
        vec![4., 1., 2., 3., 4., 1., 2., 3., 4., 1., 2.]
    );
    // Negative pads crop, then padding refers to the cropped tensor.
    assert_eq!(pad(PadMode::Constant, &[-1, 1]), vec![2., 3., 4., 0.]);
    assert_eq!(pad(PadMode::Reflect, &[-1, 1]), vec![2., 3., 4., 3.]);
    assert!(
        run1(
            Layout::Pad {
                mode: PadMode::Constant
            },
            &[&x, &i64s(&[-3, -2])],
            DType::F32
        )
        .is_err()
    );
    let c = Tensor::scalar(7.5f32);
    let axes = i64s(&[-1]);
    let y = run1(
        Layout::Pad {
            mode: PadMode::Constant,
        },
        &[&x, &i64s(&[0, 1]), &c, &axes],
        DType::F32,
    )
    .unwrap();
    assert_eq!(vals(&y), vec![1., 2., 3., 4., 7.5]);
    let e = iota(&[0]);
    assert!(
        run1(
            Layout::Pad {
                mode: PadMode::Edge
            },
            &[&e, &i64s(&[1, 0])],
            DType::F32
        )
        .is_err()
    );
    let ci = Tensor::scalar(1i32);
    assert!(
        run1(
            Layout::Pad {
                mode: PadMode::Constant
            },
            &[&x, &i64s(&[0, 1]), &ci],
            DType::F32
        )
        .is_err()
    );
}

#[test]
fn constant_of_shape_checks_the_cap() {
    let v = Tensor::from_vec(vec![1], vec![5i32]);
    let y = run1(
        Layout::ConstantOfShape {
            value: Some(v.clone()),
        },
        &[&i64s(&[2, 2])],
        DType::I32,
    )
    .unwrap();
    assert_eq!(y.to_vec::<i32>().unwrap(), vec![5; 4]);
    let y = run1(
        Layout::ConstantOfShape { value: None },
        &[&i64s(&[])],
        DType::F32,
    )
    .unwrap();
    assert_eq!((y.dims(), vals(&y)), (&[][..], vec![0.]));
    let huge = i64s(&[1 << 40, 1 << 40]);
    let r = run1(
        Layout::ConstantOfShape { value: Some(v) },
        &[&huge],
        DType::I32,
    );
    assert!(matches!(r, Err(EvalError::TooLarge(_))), "{r:?}");
}

#[test]
fn range_counts_and_dtypes() {
    let r = |s: i32, l: i32, d: i32| {
        run1(
            Layout::Range,
            &[&Tensor::scalar(s), &Tensor::scalar(l), &Tensor::scalar(d)],
            DType::I32,
        )
        .map(|t| t.to_vec::<i32>().unwrap())
    };
    assert_eq!(r(10, 4, -2).unwrap(), vec![10, 8, 6]);
    assert_eq!(r(3, 9, 3).unwrap(), vec![3, 6]);
    assert_eq!(r(3, 9, -3).unwrap(), Vec::<i32>::new());
    assert_eq!(
        r(i32::MIN, i32::MAX, i32::MAX).unwrap(),
        vec![i32::MIN, -1, i32::MAX - 1]
    );
    assert!(r(1, 2, 0).is_err());
    let f = |s: f32, l: f32, d: f32| {
        run1(
            Layout::Range,
            &[&Tensor::scalar(s), &Tensor::scalar(l), &Tensor::scalar(d)],
            DType::F32,
        )
        .map(|t| vals(&t))
    };
    assert_eq!(f(0.0, 1.0, 0.25).unwrap(), vec![0.0, 0.25, 0.5, 0.75]);
    assert!(f(0.0, 1.0, 0.0).is_err());
    assert!(matches!(f(0.0, 1e30, 1.0), Err(EvalError::TooLarge(_))));
}
