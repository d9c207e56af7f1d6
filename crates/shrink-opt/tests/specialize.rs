//! Specialization for code generation (`Ctx::require_static`): a symbolic input dim or a value
//! whose shape depends on non-constant data is a clear error naming the dim or node and the flag
//! that fixes it; after `bind_dim` / `freeze` every value is static.
use shrink_ir::text::parse_graph;
use shrink_ir::{Graph, Tensor};
use shrink_opt::specialize::{bind_dim, freeze};
use shrink_opt::{Ctx, run_passes};

fn static_ctx() -> Ctx {
    Ctx {
        verify: true,
        require_static: true,
        ..Default::default()
    }
}

fn shapes(g: &mut Graph) -> Result<usize, String> {
    let stats = run_passes(g, &["shapes"], &static_ctx()).map_err(|e| e.to_string())?;
    Ok(stats[0].get("values"))
}

const SYMBOLIC: &str = "graph {
  %0 = Input 0 \"x\" : f32[N,4]
  %1 = Relu(%0) \"act\" : f32[N,4]
  %2 = Const f32[4,3] [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0] \"w\" : f32[4,3]
  %3 = MatMul(%1, %2) \"fc\" : f32[N,3]
  output \"y\" = %3
}
";

#[test]
fn symbolic_dim_names_the_flag_until_bound() {
    let mut g = parse_graph(SYMBOLIC).unwrap();
    let err = shapes(&mut g.clone()).unwrap_err();
    assert!(
        err.contains("input 'x' has symbolic dim 'N'") && err.contains("--dim N=VALUE"),
        "{err}"
    );
    assert_eq!(bind_dim(&mut g, "N", 5), Ok(1));
    assert_eq!(
        shapes(&mut g),
        Ok(4),
        "Input, Relu, Const and MatMul are all static"
    );
    let fc = g.node_ids().into_iter().find(|&id| g.node(id).name == "fc");
    let ty = &g.node(fc.unwrap()).outputs[0];
    assert_eq!(
        ty.shape.as_ref().and_then(|s| s.as_fixed()),
        Some(vec![5, 3])
    );
    let err = bind_dim(&mut g, "M", 2).unwrap_err();
    assert!(
        err.contains("no graph input has a dimension named 'M'"),
        "{err}"
    );
}

const DATA_DEPENDENT: &str = "graph {
  %0 = Input 0 \"x\" : f32[2,3]
  %1 = Input 1 \"s\" : i64[2]
  %2 = Reshape(%0, %1) \"r\" : f32[*]
  output \"y\" = %2
}
";

#[test]
fn data_dependent_shape_names_the_node_until_frozen() {
    let mut g = parse_graph(DATA_DEPENDENT).unwrap();
    let err = shapes(&mut g.clone()).unwrap_err();
    assert!(
        err.contains("'r'") && err.contains("Reshape") && err.contains("--freeze"),
        "{err}"
    );
    freeze(&mut g, "s", Tensor::from_vec(vec![2], vec![3i64, 2])).unwrap();
    shapes(&mut g).unwrap();
    let r = g.node_ids().into_iter().find(|&id| g.node(id).name == "r");
    let ty = &g.node(r.unwrap()).outputs[0];
    assert_eq!(
        ty.shape.as_ref().and_then(|s| s.as_fixed()),
        Some(vec![3, 2])
    );
    // Freezing to a value that does not fit the data is refused, not wrapped.
    let mut bad = parse_graph(DATA_DEPENDENT).unwrap();
    freeze(&mut bad, "s", Tensor::from_vec(vec![2], vec![4i64, 2])).unwrap();
    let err = shapes(&mut bad).unwrap_err();
    assert!(err.contains("'r'"), "{err}");
}

/// Integration tests see this crate without `cfg(test)`; the self dev-dependency with feature
/// `verify` keeps the verifier on for `Ctx::default()` here too.
#[test]
fn default_ctx_verifies_in_tests() {
    assert!(Ctx::default().verify);
}

/// The expanded ReduceL2 of the ONNX suite, plus an integer input that only indexes data: the
/// output is declared static, the ReduceSum in between is not, and its axes are a graph input.
const AXES_INPUT: &str = "graph {
  %0 = Input 0 \"x\" : f32[2,3,4]
  %1 = Input 1 \"axes\" : i64[1]
  %2 = Input 2 \"idx\" : i64[2]
  %3 = Mul(%0, %0) \"sq\" : f32[2,3,4]
  %4 = ReduceSum{keepdims=true, noop_with_empty_axes=false}(%3, %1) \"sum\" : f32[*]
  %5 = Sqrt(%4) \"l2\" : f32[2,1,4]
  %6 = Gather{axis=0}(%0, %2) \"pick\" : f32[2,3,4]
  output \"y\" = %5
  output \"z\" = %6
}
";

#[test]
fn specializing_to_data_fixes_inputs_that_shapes_depend_on_and_only_those() {
    use shrink_opt::specialize::{dynamic_values, specialize_to_data};
    let g0 = parse_graph(AXES_INPUT).unwrap();
    let x = Tensor::from_vec(vec![2, 3, 4], (0..24).map(|i| i as f32).collect::<Vec<_>>());
    let axes = Tensor::from_vec(vec![1], vec![1i64]);
    let idx = Tensor::from_vec(vec![2], vec![1i64, 0]);
    let inputs = vec![x, axes, idx];
    // Shapes alone leave the ReduceSum dynamic: its axes are data.
    let mut g = g0.clone();
    let err = shapes(&mut g).unwrap_err();
    assert!(err.contains("'sum'"), "{err}");
    let mut g = g0.clone();
    let names = specialize_to_data(&mut g, &inputs, &static_ctx()).unwrap();
    assert_eq!(
        names,
        ["axes"],
        "idx only selects rows; no shape depends on it"
    );
    assert_eq!(g.inputs.len(), 3, "the interface is unchanged");
    let before = shrink_ref::run(&g0, &inputs, &Default::default()).unwrap();
    run_passes(&mut g, &shrink_opt::default_pipeline(), &static_ctx()).unwrap();
    assert!(dynamic_values(&g).is_empty(), "{:?}", dynamic_values(&g));
    let after = shrink_ref::run(&g, &inputs, &Default::default()).unwrap();
    assert_eq!(before, after);
    // A Reshape target given as data is found the same way.
    let mut g = parse_graph(DATA_DEPENDENT).unwrap();
    let x = Tensor::from_vec(vec![2, 3], vec![0f32; 6]);
    let s = Tensor::from_vec(vec![2], vec![3i64, 2]);
    assert_eq!(
        specialize_to_data(&mut g, &[x, s], &static_ctx()),
        Ok(vec!["s".to_string()])
    );
    shapes(&mut g).unwrap();
}
