//! The grid analysis on small graphs: every spelling it claims to accept, and the near misses
//! (integers beyond int8, a Clip that cuts the grid, no Round, another reduce axis or tensor, a
//! run-time or per-column scale, DynamicQuantizeLinear) it must refuse.
use super::*;
use shrink_ir::{Tensor, ValueType};
use std::sync::Arc;

/// A graph under construction around an input `x` of `dims`.
struct B {
    g: Graph,
    dims: Vec<usize>,
}

impl B {
    fn new(dims: &[usize]) -> (B, Value) {
        let mut g = Graph::new();
        let x = g.add_input("x", ValueType::fixed(DType::F32, dims));
        let b = B {
            g,
            dims: dims.to_vec(),
        };
        (b, x.into())
    }
    fn k(&mut self, v: f32) -> Value {
        self.g.add_const("k", Arc::new(Tensor::scalar(v))).into()
    }
    fn konst(&mut self, t: Tensor) -> Value {
        self.g.add_const("t", Arc::new(t)).into()
    }
    fn node(&mut self, op: Op, ins: &[Option<Value>], dtype: DType, dims: &[usize]) -> Value {
        let ty = ValueType::fixed(dtype, dims);
        self.g.add_node(op, "n", ins, vec![ty]).into()
    }
    /// An f32 node whose dims are the broadcast of its inputs' (full or per-row).
    fn op(&mut self, op: Op, ins: &[Option<Value>]) -> Value {
        let full = ins
            .iter()
            .flatten()
            .any(|&v| fixed_dims(&self.g, v).as_deref() == Some(&self.dims[..]));
        let dims = self.row_dims(full);
        self.node(op, ins, DType::F32, &dims)
    }
    fn row_dims(&self, full: bool) -> Vec<usize> {
        let mut d = self.dims.clone();
        if !full {
            *d.last_mut().unwrap() = 1;
        }
        d
    }
    fn bin(&mut self, op: Binary, a: Value, b: Value) -> Value {
        self.op(Op::Binary(op), &[Some(a), Some(b)])
    }
    fn un(&mut self, op: Unary, a: Value) -> Value {
        self.op(Op::Unary(op), &[Some(a)])
    }
    fn clip(&mut self, a: Value, lo: Option<f32>, hi: Option<f32>) -> Value {
        let (lo, hi) = (lo.map(|v| self.k(v)), hi.map(|v| self.k(v)));
        self.op(Op::Ternary(Ternary::Clip), &[Some(a), lo, hi])
    }
    /// `ReduceMax(Abs(x), [axis], keepdims)`.
    fn absmax(&mut self, x: Value, axis: i64, keepdims: bool) -> Value {
        let a = self.un(Unary::Abs, x);
        let axes = self.konst(Tensor::from_vec(vec![1], vec![axis]));
        let mut dims = self.dims.clone();
        let at = axis.rem_euclid(dims.len() as i64) as usize;
        if keepdims {
            dims[at] = 1;
        } else {
            dims.remove(at);
        }
        let op = Op::Reduce(Reduce::ReduceMax {
            keepdims,
            noop_with_empty_axes: false,
        });
        self.node(op, &[Some(a), Some(axes)], DType::F32, &dims)
    }
    fn max_eps(&mut self, m: Value) -> Value {
        let eps = self.k(1e-5);
        self.op(Op::Variadic(Variadic::Max), &[Some(m), Some(eps)])
    }
    fn grid(&self, y: Value) -> Option<Grid> {
        of(&self.g, y)
    }
}

const ABSMAX: Option<Grid> = Some(Grid::RowAbsmax { full: 127 });

/// BitNet's quantizer: `s = k / clamp(absmax)`, `y = clip(round(x·s), lo, hi) / s`.
fn bitnet(dims: &[usize], k: f32, clip: Option<(f32, f32)>) -> (B, Value) {
    let (mut b, x) = B::new(dims);
    let m = b.absmax(x, -1, true);
    let m = b.max_eps(m);
    let kk = b.k(k);
    let s = b.bin(Binary::Div, kk, m);
    let v = b.bin(Binary::Mul, x, s);
    let mut q = b.un(Unary::Round, v);
    if let Some((lo, hi)) = clip {
        q = b.clip(q, Some(lo), Some(hi));
    }
    let y = b.bin(Binary::Div, q, s);
    (b, y)
}

#[test]
fn accepts_bitnet_absmax_spellings() {
    let (b, y) = bitnet(&[4, 64], 127.0, Some((-128.0, 127.0)));
    assert_eq!(b.grid(y), ABSMAX, "Max eps, Div by the scale");
    // Three batch dims, axis 2 (not -1).
    let (mut b, x) = B::new(&[2, 3, 64]);
    let m = b.absmax(x, 2, true);
    let m = b.max_eps(m);
    let k = b.k(127.0);
    let s = b.bin(Binary::Div, k, m);
    let v = b.bin(Binary::Mul, s, x);
    let r = b.un(Unary::Round, v);
    let q = b.clip(r, Some(-128.0), Some(127.0));
    let y = b.bin(Binary::Div, q, s);
    assert_eq!(b.grid(y), ABSMAX, "3-D, scale first");
    // Clip(min = eps) for the epsilon, Round then Clip, y = q · Reciprocal(s).
    for eps in ["clip", "add", "none", "max swapped"] {
        let (mut b, x) = B::new(&[4, 64]);
        let m = b.absmax(x, -1, true);
        let e = b.k(1e-5);
        let m = match eps {
            "clip" => b.op(Op::Ternary(Ternary::Clip), &[Some(m), Some(e), None]),
            "add" => b.bin(Binary::Add, m, e),
            "max swapped" => b.op(Op::Variadic(Variadic::Max), &[Some(e), Some(m)]),
            _ => m,
        };
        let k = b.k(127.0);
        let s = b.bin(Binary::Div, k, m);
        let v = b.bin(Binary::Mul, x, s);
        let r = b.un(Unary::Round, v);
        let q = b.clip(r, Some(-128.0), Some(127.0));
        let si = b.un(Unary::Reciprocal, s);
        let y = b.bin(Binary::Mul, q, si);
        assert_eq!(b.grid(y), ABSMAX, "eps {eps}, Mul by Reciprocal");
    }
    // x / max(absmax, eps) · 127, y = q · (max(absmax, eps) / 127); and Clip before Round.
    let (mut b, x) = B::new(&[4, 64]);
    let m = b.absmax(x, -1, true);
    let m = b.max_eps(m);
    let xn = b.bin(Binary::Div, x, m);
    let k = b.k(127.0);
    let v = b.bin(Binary::Mul, xn, k);
    let c = b.clip(v, Some(-128.0), Some(127.0));
    let q = b.un(Unary::Round, c);
    let st = b.bin(Binary::Div, m, k);
    let y = b.bin(Binary::Mul, q, st);
    assert_eq!(
        b.grid(y),
        ABSMAX,
        "divide by the absmax, then multiply by 127"
    );
    // scale = m / 127, y = round(x / scale) · scale, no Clip.
    let (mut b, x) = B::new(&[4, 64]);
    let m = b.absmax(x, -1, true);
    let m = b.max_eps(m);
    let k = b.k(127.0);
    let st = b.bin(Binary::Div, m, k);
    let v = b.bin(Binary::Div, x, st);
    let q = b.un(Unary::Round, v);
    let y = b.bin(Binary::Mul, st, q);
    assert_eq!(b.grid(y), ABSMAX, "scale = absmax / 127, no Clip");
    // A 4-bit quantizer is a grid of full scale 7.
    let (b, y) = bitnet(&[4, 64], 7.0, Some((-8.0, 7.0)));
    assert_eq!(b.grid(y), Some(Grid::RowAbsmax { full: 7 }));
    // A Clip wider than the absmax scale's reach is a no-op for every row.
    let (b, y) = bitnet(&[4, 64], 127.0, Some((-200.0, 200.0)));
    assert_eq!(b.grid(y), ABSMAX, "Clip [-200, 200] after an absmax of 127");
}

/// `DequantizeLinear(q, scale, zp)` of `q` (from QuantizeLinear of `x` when `dtype` is
/// 8-bit).
fn qdq(dtype: DType, zp: Option<Tensor>, scale: Option<f32>) -> (B, Value) {
    let (mut b, x) = B::new(&[4, 64]);
    let s = match scale {
        Some(s) => b.k(s),
        None => b.g.add_input("s", ValueType::fixed(DType::F32, &[])).into(),
    };
    let z = zp.map(|t| b.konst(t));
    let dims = b.dims.clone();
    let q = b.node(
        Op::Quant(Quant::QuantizeLinear {
            axis: 1,
            block_size: 0,
            output_dtype: Some(dtype),
            saturate: true,
            precision: None,
        }),
        &[Some(x), Some(s), z],
        dtype,
        &dims,
    );
    let op = Op::Quant(Quant::DequantizeLinear {
        axis: 1,
        block_size: 0,
        output_dtype: None,
    });
    let y = b.node(op, &[Some(q), Some(s), z], DType::F32, &dims);
    (b, y)
}

#[test]
fn accepts_constant_grids() {
    let step = Some(Grid::Fixed {
        step: 0.0125f32 as f64,
    });
    let (b, y) = qdq(DType::I8, Some(Tensor::scalar(0i8)), Some(0.0125));
    assert_eq!(b.grid(y), step, "QDQ int8, zero point 0");
    let (b, y) = qdq(DType::I8, None, Some(0.0125));
    assert_eq!(b.grid(y), step, "QDQ int8 without a zero point");
    let (b, y) = qdq(DType::U8, Some(Tensor::scalar(128u8)), Some(0.0125));
    assert_eq!(
        b.grid(y),
        step,
        "QDQ uint8, zero point 128: q − zp in [-128, 127]"
    );
    // Written as float ops: clip(round(x / 0.05), -128, 127) · 0.05.
    let (mut b, x) = B::new(&[4, 64]);
    let c = b.k(0.05);
    let v = b.bin(Binary::Div, x, c);
    let r = b.un(Unary::Round, v);
    let q = b.clip(r, Some(-128.0), Some(127.0));
    let y = b.bin(Binary::Mul, q, c);
    let want = Some(Grid::Fixed {
        step: 0.05f32 as f64,
    });
    assert_eq!(b.grid(y), want, "float fake-quant with a constant scale");
    // round(clip(x · 20, -127, 127)) / 20.
    let (mut b, x) = B::new(&[4, 64]);
    let c = b.k(20.0);
    let v = b.bin(Binary::Mul, x, c);
    let v = b.clip(v, Some(-127.0), Some(127.0));
    let q = b.un(Unary::Round, v);
    let y = b.bin(Binary::Div, q, c);
    assert_eq!(b.grid(y), Some(Grid::Fixed { step: 1.0 / 20.0 }));
    // BitNet's integers dequantized by a constant: a compile-time step.
    let (mut b, x) = B::new(&[4, 64]);
    let m = b.absmax(x, -1, true);
    let m = b.max_eps(m);
    let k = b.k(127.0);
    let s = b.bin(Binary::Div, k, m);
    let v = b.bin(Binary::Mul, x, s);
    let q = b.un(Unary::Round, v);
    let c = b.k(0.5);
    let y = b.bin(Binary::Mul, q, c);
    assert_eq!(b.grid(y), Some(Grid::Fixed { step: 0.5 }));
}

#[test]
fn rejects_near_misses() {
    // Integers beyond int8: a Clip to [-200, 200] on a constant scale, a quantizer of
    // full scale 200, 16-bit and unsigned 8-bit QDQ with zero point 0.
    let (mut b, x) = B::new(&[4, 64]);
    let c = b.k(0.05);
    let v = b.bin(Binary::Div, x, c);
    let r = b.un(Unary::Round, v);
    let q = b.clip(r, Some(-200.0), Some(200.0));
    let y = b.bin(Binary::Mul, q, c);
    assert_eq!(b.grid(y), None, "Clip [-200, 200], constant scale");
    let (b, y) = bitnet(&[4, 64], 200.0, Some((-200.0, 200.0)));
    assert_eq!(b.grid(y), None, "absmax scale 200");
    let (b, y) = qdq(DType::I16, Some(Tensor::scalar(0i16)), Some(0.0125));
    assert_eq!(b.grid(y), None, "int16 QDQ");
    let (b, y) = qdq(DType::U8, Some(Tensor::scalar(0u8)), Some(0.0125));
    assert_eq!(b.grid(y), None, "uint8 QDQ, zero point 0: [0, 255]");
    // A Clip inside the absmax scale's reach: the rows' largest integer is not 127.
    let (b, y) = bitnet(&[4, 64], 127.0, Some((-100.0, 100.0)));
    assert_eq!(b.grid(y), None, "Clip [-100, 100]");
    // Round missing (Clip alone), or Floor instead.
    for op in [None, Some(Unary::Floor)] {
        let (mut b, x) = B::new(&[4, 64]);
        let m = b.absmax(x, -1, true);
        let m = b.max_eps(m);
        let k = b.k(127.0);
        let s = b.bin(Binary::Div, k, m);
        let mut v = b.bin(Binary::Mul, x, s);
        if let Some(f) = &op {
            v = b.un(f.clone(), v);
        }
        let q = b.clip(v, Some(-128.0), Some(127.0));
        let y = b.bin(Binary::Div, q, s);
        assert_eq!(b.grid(y), None, "{op:?} instead of Round");
    }
    // Non-integral Clip bounds after Round.
    let (b, y) = bitnet(&[4, 64], 127.0, Some((-127.5, 127.5)));
    assert_eq!(b.grid(y), None, "Clip [-127.5, 127.5]");
    // The absmax over another axis, without keepdims, of another tensor, or capped above.
    for case in ["axis 0", "no keepdims", "other tensor", "capped"] {
        let (mut b, x) = B::new(&[4, 64]);
        let other: Value =
            b.g.add_input("x2", ValueType::fixed(DType::F32, &[4, 64]))
                .into();
        let m = match case {
            "axis 0" => b.absmax(x, 0, true),
            "no keepdims" => b.absmax(x, -1, false),
            "other tensor" => b.absmax(other, -1, true),
            _ => b.absmax(x, -1, true),
        };
        let m = if case == "capped" {
            b.clip(m, Some(1e-5), Some(10.0))
        } else {
            b.max_eps(m)
        };
        let k = b.k(127.0);
        let s = b.bin(Binary::Div, k, m);
        let v = b.bin(Binary::Mul, x, s);
        let r = b.un(Unary::Round, v);
        let q = b.clip(r, Some(-128.0), Some(127.0));
        let y = b.bin(Binary::Div, q, s);
        assert_eq!(b.grid(y), None, "{case}");
    }
    // A QDQ scale that is not a constant, or one scale per column.
    let (b, y) = qdq(DType::I8, Some(Tensor::scalar(0i8)), None);
    assert_eq!(b.grid(y), None, "run-time QDQ scale");
    let (mut b, x) = B::new(&[4, 64]);
    let s = b.konst(Tensor::from_vec(vec![64], vec![0.0125f32; 64]));
    let dq = |b: &mut B, q: Value| {
        let op = Op::Quant(Quant::DequantizeLinear {
            axis: 1,
            block_size: 0,
            output_dtype: None,
        });
        b.node(op, &[Some(q), Some(s)], DType::F32, &[4, 64])
    };
    let qop = Op::Quant(Quant::QuantizeLinear {
        axis: 1,
        block_size: 0,
        output_dtype: None,
        saturate: true,
        precision: None,
    });
    let q = b.node(qop, &[Some(x), Some(s)], DType::I8, &[4, 64]);
    let y = dq(&mut b, q);
    assert_eq!(b.grid(y), None, "per-column QDQ scale");
    // DynamicQuantizeLinear: the scale is a run-time output.
    let (mut b, x) = B::new(&[4, 64]);
    let ty = |d: DType, dims: &[usize]| ValueType::fixed(d, dims);
    let dql = b.g.add_node(
        Op::Quant(Quant::DynamicQuantizeLinear),
        "dql",
        &[Some(x)],
        vec![
            ty(DType::U8, &[4, 64]),
            ty(DType::F32, &[]),
            ty(DType::U8, &[]),
        ],
    );
    let op = Op::Quant(Quant::DequantizeLinear {
        axis: 1,
        block_size: 0,
        output_dtype: None,
    });
    let ins = [0, 1, 2].map(|k| Some(Value::new(dql, k)));
    let y = b.node(op, &ins, DType::F32, &[4, 64]);
    assert_eq!(b.grid(y), None, "DynamicQuantizeLinear");
    // A dequantization factor that varies along the row.
    let (mut b, x) = B::new(&[4, 64]);
    let c = b.k(0.05);
    let v = b.bin(Binary::Div, x, c);
    let r = b.un(Unary::Round, v);
    let q = b.clip(r, Some(-128.0), Some(127.0));
    let per_col = b.konst(Tensor::from_vec(vec![64], vec![0.05f32; 64]));
    let y = b.bin(Binary::Mul, q, per_col);
    assert_eq!(b.grid(y), None, "per-column dequantization");
    // The plain input.
    let (b, x) = B::new(&[4, 64]);
    assert_eq!(b.grid(x), None, "no quantizer");
}
