//! One negative test per verifier invariant (see the list in `verify.rs`), plus the text parser's
//! located errors.
use shrink_ir::op::{Binary, Unary};
use shrink_ir::text::parse_graph;
use shrink_ir::{DType, Edge, Graph, Op, Tensor, Value, ValueType, verify};
use std::sync::Arc;

fn f32s(n: usize) -> ValueType {
    ValueType::fixed(DType::F32, &[n])
}

/// x → Relu → y, valid.
fn base() -> (Graph, shrink_ir::NodeId, shrink_ir::NodeId) {
    let mut g = Graph::new();
    let x = g.add_input("x", f32s(4));
    let r = g.add_node(
        Op::Unary(Unary::Relu),
        "relu",
        &[Some(x.into())],
        vec![f32s(4)],
    );
    g.outputs.push(("y".into(), r.into()));
    (g, x, r)
}

#[test]
fn valid_graph_verifies() {
    let (g, _, _) = base();
    verify(&g).unwrap();
}

#[test]
fn invariant_1_cycle() {
    let (mut g, _, r) = base();
    let n = g.add_node(
        Op::Unary(Unary::Neg),
        "neg",
        &[Some(r.into())],
        vec![f32s(4)],
    );
    // Rewire relu's input to neg's output: relu → neg → relu.
    let e = g.g.find_edge(g.inputs[0].0, r.0).unwrap();
    g.g.remove_edge(e);
    g.connect(n.into(), r, 0);
    let err = verify(&g).unwrap_err();
    assert!(err.msg.contains("cycle"), "{err}");
}

#[test]
fn invariant_2_bad_slots_and_double_producers() {
    let (mut g, x, r) = base();
    g.g.add_edge(
        x.0,
        r.0,
        Edge {
            from_slot: 3,
            to_slot: 0,
        },
    );
    assert!(verify(&g).unwrap_err().msg.contains("reads output 3"));
    let (mut g, x, r) = base();
    g.g.add_edge(
        x.0,
        r.0,
        Edge {
            from_slot: 0,
            to_slot: 5,
        },
    );
    assert!(verify(&g).unwrap_err().msg.contains("edge into input 5"));
    let (mut g, x, r) = base();
    g.g.add_edge(
        x.0,
        r.0,
        Edge {
            from_slot: 0,
            to_slot: 0,
        },
    );
    assert!(verify(&g).unwrap_err().msg.contains("two producers"));
}

#[test]
fn invariant_3_inputs_list() {
    let (mut g, _, r) = base();
    g.inputs.push(r);
    assert!(verify(&g).unwrap_err().msg.contains("graph input 1"));
}

#[test]
fn invariant_4_const_type() {
    let (mut g, _, _) = base();
    let c = g.add_const("c", Arc::new(Tensor::from_vec(vec![2], vec![1f32, 2.0])));
    g.node_mut(c).outputs[0] = f32s(3);
    let err = verify(&g).unwrap_err();
    assert!(err.msg.contains("constant"), "{err}");
}

#[test]
fn invariant_5_dangling_output() {
    let (mut g, _, r) = base();
    g.outputs.push(("z".into(), Value::new(r, 2)));
    assert!(verify(&g).unwrap_err().msg.contains("graph output 'z'"));
}

#[test]
fn invariant_6_dtypes() {
    let (mut g, _, r) = base();
    g.node_mut(r).outputs[0].dtype = DType::I64;
    let err = verify(&g).unwrap_err();
    assert!(
        err.to_string().contains("(node 'relu', op Relu)") && err.msg.contains("imply (f32)"),
        "{err}"
    );
    let mut g = Graph::new();
    let a = g.add_input("a", f32s(2));
    let b = g.add_input("b", ValueType::fixed(DType::I32, &[2]));
    g.add_node(
        Op::Binary(Binary::Add),
        "add",
        &[Some(a.into()), Some(b.into())],
        vec![f32s(2)],
    );
    assert!(verify(&g).unwrap_err().msg.contains("input 1 is i32"));
    let mut g = Graph::new();
    let a = g.add_input("a", f32s(2));
    g.add_node(
        Op::Binary(Binary::Add),
        "add",
        &[Some(a.into()), None],
        vec![f32s(2)],
    );
    assert!(
        verify(&g)
            .unwrap_err()
            .msg
            .contains("missing required input 1")
    );
}

#[test]
fn parse_errors_carry_line_numbers() {
    let e =
        parse_graph("graph {\n  %0 = Input 0 \"x\" : f32[2]\n  %1 = Frob(%0) \"f\" : f32[2]\n}\n")
            .unwrap_err();
    assert_eq!((e.line, e.msg.as_str()), (3, "unknown op `Frob`"));
    let e = parse_graph("graph {\n  %1 = Relu(%0) \"r\" : f32[2]\n}\n").unwrap_err();
    assert_eq!((e.line, e.msg.as_str()), (2, "%0 is not defined"));
    let e = parse_graph(
        "graph {\n  %0 = Input 0 \"x\" : f32[2]\n  %1 = LeakyRelu{beta=1.0}(%0) \"r\" : f32[2]\n}",
    )
    .unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.msg.contains("no attribute `beta`"), "{}", e.msg);
}

#[test]
fn attributes_and_constants_round_trip() {
    let text = "graph {\n  %0 = Input 0 \"x\" : f32[2,N]\n  %1 = Const i64[2] [1, -1] \"shape\" : i64[2]\n  %2 = Reshape{allowzero=false}(%0, %1) \"r\" : f32[*]\n  %3 = Gemm{alpha=0.5, beta=1.0, trans_a=false, trans_b=true}(%2, %2, _) \"g\" : f32[?,?]\n  %4 = Cast{to=f16, saturate=true, round_mode=up}(%3) \"c\" : f16[?,?]\n  output \"y\" = %4\n}\n";
    let g = parse_graph(text).unwrap();
    verify(&g).unwrap();
    assert_eq!(shrink_ir::text::print_graph(&g), text);
}

#[test]
fn invariant_7_shapes() {
    let (mut g, _, r) = base();
    g.node_mut(r).outputs[0] = f32s(5);
    let err = verify(&g).unwrap_err();
    assert!(err.msg.contains("contradicts"), "{err}");
}

#[test]
fn invariant_8_ternary_annotation() {
    use shrink_ir::{TernaryWeights, WeightLayout};
    let (mut g, _, _) = base();
    let t = Tensor::from_vec(vec![2, 2], vec![0.5f32, -0.5, 0.0, 0.5]);
    let c = g.add_const("w", Arc::new(t.clone()));
    let shrink_ir::Op::Const(cid) = g.node(c).op else {
        unreachable!()
    };
    let w = TernaryWeights::detect(&t, WeightLayout::RowsFirst, 0).unwrap();
    g.ternary.insert(cid, Arc::new(w.clone()));
    verify(&g).unwrap();
    g.consts[cid.0 as usize] = Arc::new(Tensor::from_vec(vec![2, 2], vec![0.5f32, 0.5, 0.0, 0.5]));
    assert!(
        verify(&g)
            .unwrap_err()
            .msg
            .contains("differs from its value")
    );
    g.ternary.insert(shrink_ir::op::ConstId(99), Arc::new(w));
    g.consts[cid.0 as usize] = Arc::new(t);
    assert!(verify(&g).unwrap_err().msg.contains("missing constant"));
}
