//! Text → graph. Two passes: nodes are created first (keeping their printed ids, so holes left by
//! deleted nodes survive a round trip), then edges are wired, so definition order does not matter.
use super::lex::{Lexer, ParseError};
use crate::graph::{Node, NodeId, Value};
use crate::op::ConstId;
use crate::shape::{Dim, Shape};
use crate::{DType, Graph, Op, Tensor, ValueType};
use half::{bf16, f16};
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest node id the parser accepts. Ids are kept across a round trip, so the parser recreates
/// every lower unused id as a hole: without a bound one line `%99999999999 = ...` would allocate
/// that many nodes.
const MAX_NODE_ID: u64 = (1 << 21) - 1;

fn parse_node_id(lx: &mut Lexer<'_>) -> Result<usize, ParseError> {
    lx.expect('%')?;
    let id = lx.uint()?;
    if id > MAX_NODE_ID {
        return Err(lx.error(format!("node id %{id} is above %{MAX_NODE_ID}")));
    }
    Ok(id as usize)
}

/// `%N` or `%N.k` (the lexer reads `N.k` as one number token, so split it here).
fn parse_value(lx: &mut Lexer<'_>) -> Result<(usize, u32), ParseError> {
    lx.expect('%')?;
    let t = lx.float_token()?;
    let (n, s) = t.split_once('.').unwrap_or((t.as_str(), "0"));
    match (n.parse(), s.parse()) {
        (Ok(n), Ok(s)) => Ok((n, s)),
        _ => Err(lx.error(format!("bad value reference `%{t}`"))),
    }
}

pub fn parse_type(lx: &mut Lexer<'_>) -> Result<ValueType, ParseError> {
    let name = lx.ident()?;
    let dtype =
        DType::from_name(&name).ok_or_else(|| lx.error(format!("unknown dtype `{name}`")))?;
    lx.expect('[')?;
    if lx.eat('*') {
        lx.expect(']')?;
        return Ok(ValueType::unknown_shape(dtype));
    }
    let mut dims = Vec::new();
    if !lx.eat(']') {
        loop {
            let d = match lx.peek() {
                Some('?') => {
                    lx.expect('?')?;
                    Dim::Unknown
                }
                Some(c) if c.is_ascii_digit() => Dim::Fixed(lx.uint()? as usize),
                _ => Dim::Sym(lx.ident()?),
            };
            dims.push(d);
            if lx.eat(']') {
                break;
            }
            lx.expect(',')?;
        }
    }
    Ok(ValueType::new(dtype, Some(Shape(dims))))
}

/// Parses `dtype[dims] [e0, e1, ...]` (string elements as quoted literals).
pub fn parse_tensor(lx: &mut Lexer<'_>) -> Result<Tensor, ParseError> {
    let ty = parse_type(lx)?;
    let dims = ty
        .shape
        .as_ref()
        .and_then(|s| s.as_fixed())
        .ok_or_else(|| lx.error("a tensor literal needs fixed dims"))?;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| lx.error("the tensor literal's element count overflows"))?;
    // The declared count is not trusted for allocation: a short literal with huge dims fails at
    // its end of text, after allocating only what it holds.
    let reserve = n.min(1 << 12);
    lx.expect('[')?;
    if ty.dtype == DType::String {
        let mut strings = Vec::with_capacity(reserve);
        for i in 0..n {
            if i > 0 {
                lx.expect(',')?;
            }
            strings.push(lx.byte_string()?.into());
        }
        lx.expect(']')?;
        return Tensor::from_strings(dims, strings).map_err(|e| lx.error(e.to_string()));
    }
    let mut bytes = Vec::with_capacity(reserve * ty.dtype.size());
    for i in 0..n {
        if i > 0 {
            lx.expect(',')?;
        }
        match ty.dtype {
            DType::F32 => bytes.extend((lx.float()? as f32).to_le_bytes()),
            DType::F64 => bytes.extend(lx.float()?.to_le_bytes()),
            DType::F16 => bytes.extend(f16::from_f32(lx.float()? as f32).to_le_bytes()),
            DType::BF16 => bytes.extend(bf16::from_f32(lx.float()? as f32).to_le_bytes()),
            DType::U64 => bytes.extend(lx.uint()?.to_le_bytes()),
            d => {
                let v = lx.int()?;
                let le = v.to_le_bytes();
                bytes.extend_from_slice(&le[..d.size()]);
            }
        }
    }
    lx.expect(']')?;
    Tensor::from_bytes(ty.dtype, dims, bytes.into()).map_err(|e| lx.error(e.to_string()))
}

struct PendingEdges {
    to: usize,
    inputs: Vec<Option<(usize, u32)>>,
    line: usize,
}

/// Parses a whole graph.
pub fn parse_graph(src: &str) -> Result<Graph, ParseError> {
    let mut lx = Lexer::new(src);
    if !lx.eat_word("graph") {
        return Err(lx.error("expected `graph`"));
    }
    lx.expect('{')?;
    let mut nodes: BTreeMap<usize, Node> = BTreeMap::new();
    let mut inputs: BTreeMap<usize, usize> = BTreeMap::new();
    let mut consts = Vec::new();
    let mut ternary = std::collections::BTreeMap::new();
    let mut pending = Vec::new();
    let mut outputs = Vec::new();
    loop {
        if lx.eat('}') {
            break;
        }
        if lx.eat_word("output") {
            let name = lx.string()?;
            lx.expect('=')?;
            let line = lx.line();
            outputs.push((name, parse_value(&mut lx)?, line));
            continue;
        }
        let id = parse_node_id(&mut lx)?;
        let line = lx.line();
        if nodes.contains_key(&id) {
            return Err(lx.error(format!("%{id} is defined twice")));
        }
        lx.expect('=')?;
        let opname = lx.ident()?;
        let (op, num_inputs) = match opname.as_str() {
            "Input" => {
                let index = lx.uint()? as usize;
                if inputs.insert(index, id).is_some() {
                    return Err(lx.error(format!("graph input {index} is defined twice")));
                }
                (Op::Input { index }, 0)
            }
            "Const" => {
                let t = parse_tensor(&mut lx)?;
                let cid = ConstId(consts.len() as u32);
                if lx.eat_word("ternary") {
                    lx.expect('(')?;
                    let layout = match lx.ident()?.as_str() {
                        "rows_first" => crate::WeightLayout::RowsFirst,
                        "cols_first" => crate::WeightLayout::ColsFirst,
                        other => return Err(lx.error(format!("unknown weight layout `{other}`"))),
                    };
                    lx.expect(',')?;
                    let kind = lx.ident()?;
                    lx.expect(')')?;
                    let w = crate::TernaryWeights::detect(&t, layout, 0)
                        .filter(|w| w.scale.kind() == kind)
                        .ok_or_else(|| lx.error(format!("constant is not ternary ({kind})")))?;
                    ternary.insert(cid, Arc::new(w));
                }
                consts.push(Arc::new(t));
                (Op::Const(cid), 0)
            }
            name => {
                let op = Op::parse_named(name, &mut lx)?
                    .ok_or_else(|| lx.error(format!("unknown op `{name}`")))?;
                lx.expect('(')?;
                let mut ins = Vec::new();
                if !lx.eat(')') {
                    loop {
                        if lx.eat_word("_") {
                            ins.push(None);
                        } else {
                            ins.push(Some(parse_value(&mut lx)?));
                        }
                        if lx.eat(')') {
                            break;
                        }
                        lx.expect(',')?;
                    }
                }
                let n = ins.len();
                pending.push(PendingEdges {
                    to: id,
                    inputs: ins,
                    line,
                });
                (op, n)
            }
        };
        let name = lx.string()?;
        lx.expect(':')?;
        let mut outs = vec![parse_type(&mut lx)?];
        while lx.eat(',') {
            outs.push(parse_type(&mut lx)?);
        }
        nodes.insert(
            id,
            Node {
                op,
                name,
                num_inputs,
                outputs: outs,
            },
        );
    }
    if !lx.at_end() {
        return Err(lx.error("unexpected text after the graph"));
    }
    let mut g = build(nodes, inputs, consts, pending, outputs)?;
    g.ternary = ternary;
    Ok(g)
}

type OutputRef = (String, (usize, u32), usize);

fn build(
    nodes: BTreeMap<usize, Node>,
    inputs: BTreeMap<usize, usize>,
    consts: Vec<Arc<Tensor>>,
    pending: Vec<PendingEdges>,
    outputs: Vec<OutputRef>,
) -> Result<Graph, ParseError> {
    let mut g = Graph::new();
    g.consts = consts;
    // Recreate holes so that every node keeps its printed index.
    let max = nodes.keys().next_back().map_or(0, |m| m + 1);
    let mut holes = Vec::new();
    let mut all_nodes = nodes;
    for i in 0..max {
        match all_nodes.remove(&i) {
            Some(n) => {
                g.add_raw(n);
            }
            None => holes.push(g.add_raw(Node {
                op: Op::Input { index: usize::MAX },
                name: String::new(),
                num_inputs: 0,
                outputs: vec![],
            })),
        }
    }
    for h in holes {
        g.remove_node(h);
    }
    let err = |line: usize, msg: String| ParseError { line, msg };
    let check = |g: &Graph, line: usize, (n, s): (usize, u32)| -> Result<Value, ParseError> {
        let id = NodeId(NodeIndex::new(n));
        // (NodeIndex::new truncates to 32 bits: a huge reference must not alias a low id.)
        if n as u64 > MAX_NODE_ID || !g.contains(id) {
            return Err(err(line, format!("%{n} is not defined")));
        }
        if s as usize >= g.node(id).outputs.len() {
            return Err(err(line, format!("%{n} has no output {s}")));
        }
        Ok(Value::new(id, s))
    };
    for p in pending {
        let to = NodeId(NodeIndex::new(p.to));
        for (slot, v) in p.inputs.iter().enumerate() {
            if let Some(v) = v {
                let v = check(&g, p.line, *v)?;
                g.connect(v, to, slot);
            }
        }
    }
    for (i, (index, id)) in inputs.into_iter().enumerate() {
        if index != i {
            return Err(err(
                0,
                format!("graph inputs must be numbered 0.., input {i} is missing"),
            ));
        }
        g.inputs.push(NodeId(NodeIndex::new(id)));
    }
    for (name, v, line) in outputs {
        let v = check(&g, line, v)?;
        g.outputs.push((name, v));
    }
    Ok(g)
}
