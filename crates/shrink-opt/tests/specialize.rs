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
