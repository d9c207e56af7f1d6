//! Older opset forms import with their own semantics: attributes that later became inputs
//! (Clip min/max, Reduce axes, Squeeze/Unsqueeze axes, Split sizes, Pad pads/value, Slice
//! starts/ends, Reshape shape, Dropout ratio) and Softmax's pre-13 flatten-to-2-D behaviour. Each
//! case builds a model with the writer at the old opset and checks hand-computed outputs.
use shrink::ir::{DType, Tensor};
use shrink::onnx::writer::{Attr, ModelBuilder, WDim};

fn run(m: &ModelBuilder, x: Tensor) -> Tensor {
    let imp = shrink::onnx::load_model_bytes("old", m.to_bytes().into(), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    shrink::interp::run(&imp.graph, &[x], &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
}

fn model(opset: i64, in_dims: &[usize], op: &str, attrs: &[(&str, Attr)]) -> ModelBuilder {
    let mut m = ModelBuilder::new("old", opset);
    let dims: Vec<WDim> = in_dims.iter().map(|&d| WDim::Fixed(d)).collect();
    m.input("x", DType::F32, &dims)
        .output_unshaped("y", DType::F32)
        .node(op, "n", &["x"], &["y"], attrs);
    m
}

fn x6() -> Tensor {
    Tensor::from_vec(vec![2, 3], vec![1f32, -2.0, 3.0, -4.0, 5.0, -6.0])
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn clip_6_takes_min_max_attributes() {
    let y = run(
        &model(
            6,
            &[2, 3],
            "Clip",
            &[("min", Attr::Float(-1.5)), ("max", Attr::Float(2.0))],
        ),
        x6(),
    );
    assert_eq!(vals(&y), vec![1.0, -1.5, 2.0, -1.5, 2.0, -1.5]);
}

#[test]
fn softmax_11_flattens_to_2d_at_axis() {
    // axis=0 before opset 13: one softmax over all six values.
    let y = run(
        &model(11, &[2, 3], "Softmax", &[("axis", Attr::Int(0))]),
        x6(),
    );
    let e: Vec<f64> = [1.0f64, -2.0, 3.0, -4.0, 5.0, -6.0]
        .iter()
        .map(|v| v.exp())
        .collect();
    let s: f64 = e.iter().sum();
    for (got, want) in vals(&y).iter().zip(e.iter().map(|v| v / s)) {
        assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }
    // Opset 13 with axis=0 normalizes each column instead.
    let y13 = run(
        &model(13, &[2, 3], "Softmax", &[("axis", Attr::Int(0))]),
        x6(),
    );
    let col0 = vals(&y13)[0] + vals(&y13)[3];
    assert!((col0 - 1.0).abs() < 1e-6);
}

#[test]
fn reduce_sum_11_takes_axes_attribute() {
    let y = run(
        &model(
            11,
            &[2, 3],
            "ReduceSum",
            &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
        ),
        x6(),
    );
    assert_eq!((y.dims().to_vec(), vals(&y)), (vec![2], vec![2.0, -5.0]));
    let y = run(
        &model(17, &[2, 3], "ReduceMax", &[("axes", Attr::Ints(vec![0]))]),
        x6(),
    );
    assert_eq!(
        (y.dims().to_vec(), vals(&y)),
        (vec![1, 3], vec![1.0, 5.0, 3.0])
    );
}

#[test]
fn squeeze_and_unsqueeze_11_take_axes_attribute() {
    let y = run(
        &model(
            11,
            &[2, 3],
            "Unsqueeze",
            &[("axes", Attr::Ints(vec![0, 3]))],
        ),
        x6(),
    );
    assert_eq!(y.dims(), &[1, 2, 3, 1]);
    let x = Tensor::from_vec(vec![1, 3, 1], vec![1f32, 2.0, 3.0]);
    let y = run(
        &model(11, &[1, 3, 1], "Squeeze", &[("axes", Attr::Ints(vec![2]))]),
        x,
    );
    assert_eq!(y.dims(), &[1, 3]);
}

#[test]
fn split_11_takes_split_attribute() {
    let mut m = ModelBuilder::new("old", 11);
    m.input("x", DType::F32, &[WDim::Fixed(2), WDim::Fixed(3)])
        .output_unshaped("a", DType::F32)
        .output_unshaped("b", DType::F32)
        .node(
            "Split",
            "s",
            &["x"],
            &["a", "b"],
            &[("axis", Attr::Int(1)), ("split", Attr::Ints(vec![1, 2]))],
        );
    let imp =
        shrink::onnx::load_model_bytes("old", m.to_bytes().into(), &Default::default()).unwrap();
    let out = shrink::interp::run(&imp.graph, &[x6()], &Default::default()).unwrap();
    assert_eq!(vals(&out[0]), vec![1.0, -4.0]);
    assert_eq!(vals(&out[1]), vec![-2.0, 3.0, 5.0, -6.0]);
}

#[test]
fn pad_2_takes_pads_and_value_attributes() {
    let y = run(
        &model(
            2,
            &[2, 3],
            "Pad",
            &[
                ("pads", Attr::Ints(vec![0, 1, 0, 0])),
                ("value", Attr::Float(9.0)),
            ],
        ),
        x6(),
    );
    assert_eq!(
        (y.dims().to_vec(), vals(&y)),
        (vec![2, 4], vec![9.0, 1.0, -2.0, 3.0, 9.0, -4.0, 5.0, -6.0])
    );
}

#[test]
fn slice_9_takes_starts_ends_attributes() {
    let y = run(
        &model(
            9,
            &[2, 3],
            "Slice",
            &[
                ("starts", Attr::Ints(vec![1])),
                ("ends", Attr::Ints(vec![3])),
                ("axes", Attr::Ints(vec![1])),
            ],
        ),
        x6(),
    );
    assert_eq!(vals(&y), vec![-2.0, 3.0, 5.0, -6.0]);
}

#[test]
fn reshape_4_takes_shape_attribute() {
    let y = run(
        &model(4, &[2, 3], "Reshape", &[("shape", Attr::Ints(vec![3, -1]))]),
        x6(),
    );
    assert_eq!(y.dims(), &[3, 2]);
}

#[test]
fn dropout_10_is_identity_in_inference() {
    let y = run(
        &model(10, &[2, 3], "Dropout", &[("ratio", Attr::Float(0.5))]),
        x6(),
    );
    assert_eq!(vals(&y), vals(&x6()));
}

#[test]
fn opset_newer_than_the_newest_known_is_refused() {
    let newest = shrink::onnx::NEWEST_OPSET;
    let ok = model(newest, &[2, 3], "Relu", &[]);
    assert_eq!(vals(&run(&ok, x6())), [1.0, 0.0, 3.0, 0.0, 5.0, 0.0]);
    let m = model(newest + 1, &[2, 3], "Relu", &[]);
    let e = match shrink::onnx::load_model_bytes("new", m.to_bytes().into(), &Default::default()) {
        Ok(_) => panic!("a newer opset must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.contains(&format!("opset {}", newest + 1)) && e.contains(&newest.to_string()),
        "{e}"
    );
}
