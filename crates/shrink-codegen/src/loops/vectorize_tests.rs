//! Tests of the vectorizer and the unroller: every kernel runs twice, vectorized and with SIMD
//! forced off, and the outputs must agree bit for bit (NaN payloads included) for odd extents,
//! special floats and wrapping integers; the emitted CLIF shows which loops got vectors.
use super::builder::{Builder, TensorRef};
use super::emit::{IsaFacts, emit_kernel, kernel_signature};
use super::ir::Expr;
use super::ir::{Kernel, Place, Ty};
use super::testing::run_kernel_with;
use cranelift_codegen::ir::{Function, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use shrink_ir::DType;

const EXTENTS: [usize; 7] = [0, 1, 3, 4, 5, 17, 67];

/// The kernel's CLIF as the host emitter writes it (vectorization on).
fn clif(k: &Kernel) -> String {
    let mut fb = settings::builder();
    fb.set("opt_level", "speed").unwrap();
    let isa = cranelift_native::builder()
        .unwrap()
        .finish(settings::Flags::new(fb))
        .unwrap();
    let facts = IsaFacts::of(&*isa);
    let mut func =
        Function::with_name_signature(UserFuncName::user(0, 0), kernel_signature(&facts));
    let gvs = vec![None; k.bufs.len()];
    emit_kernel(
        k,
        &mut func,
        &mut FunctionBuilderContext::new(),
        &facts,
        &gvs,
    );
    func.display().to_string()
}

fn is_vector(clif: &str) -> bool {
    ["x4", "x2", "x8", "x16"].iter().any(|t| clif.contains(t))
}

/// Runs `k` vectorized and scalar; asserts equal status and bytes; returns the outputs.
fn both(k: &Kernel, inputs: &[Vec<u8>], outs: &[usize], scratch: usize) -> (i32, Vec<Vec<u8>>) {
    let v = run_kernel_with(k, inputs, outs, scratch, true);
    let s = run_kernel_with(k, inputs, outs, scratch, false);
    assert_eq!(v, s, "vector and scalar emissions differ");
    v
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn special_f32(n: usize) -> Vec<f32> {
    let pool = [
        0.0,
        -0.0,
        1.5,
        -2.25,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 4.0,
        3.0e9,
        -3.0e9,
        16_777_217.0,
        0.5,
        -0.5,
        2.5,
        f32::MAX,
        -7.0,
    ];
    (0..n).map(|i| pool[(i * 7 + 3) % pool.len()]).collect()
}

/// `y[i] = f(x[i], z[i], s)` over `n` elements of f32 (s = a broadcast scalar input).
fn f32_map(n: usize, f: impl Fn(Expr, Expr, Expr) -> Expr) -> Kernel {
    let mut b = Builder::new("t");
    let x = b.buffer(Place::Input(0), DType::F32, &[n]);
    let z = b.buffer(Place::Input(1), DType::F32, &[n]);
    let s = b.buffer(Place::Input(2), DType::F32, &[1]);
    let y = b.buffer(Place::Output(0), DType::F32, &[n]);
    b.for_(n, |b, i| {
        let xv = b.load(&x, i.clone());
        let xv = b.let_(xv);
        let zv = b.load(&z, i.clone());
        let sv = b.load(&s, Expr::idx(0));
        let v = f(xv, zv, sv);
        b.store(&y, i, v);
    });
    b.finish().unwrap()
}

type F3 = dyn Fn(Expr, Expr, Expr) -> Expr;

#[test]
fn f32_arithmetic_matches_scalar_on_special_values() {
    let ops: Vec<Box<F3>> = vec![
        Box::new(|x, z, s| x.add(z).mul(s)),
        Box::new(|x, z, _| x.sub(z.clone()).div(z)),
        Box::new(|x, z, _| x.min(z)),
        Box::new(|x, z, _| x.max(z).neg()),
        Box::new(|x, _, _| x.abs().sqrt()),
        Box::new(|x, _, _| Expr::select(x.clone().lt(Expr::f32(0.0)), Expr::f32(0.0), x)),
        Box::new(|x, z, _| Expr::select(x.clone().ne(z.clone()), x, z)),
        Box::new(|x, _, _| {
            x.clone()
                .floor()
                .add(x.clone().ceil())
                .add(x.clone().trunc())
                .add(x.nearest())
        }),
        Box::new(|x, _, _| {
            x.bitcast(Ty::U32)
                .xor(Expr::int(Ty::U32, 0x8000_0000))
                .bitcast(Ty::F32)
        }),
        Box::new(|x, _, _| {
            x.clone()
                .cast(Ty::I32)
                .cast(Ty::F32)
                .add(x.cast(Ty::U32).cast(Ty::F32))
        }),
        Box::new(|x, z, _| {
            x.clone()
                .ge(z.clone())
                .cast(Ty::F32)
                .add(x.cast(Ty::Bool).cast(Ty::F32))
        }),
    ];
    for (k, op) in ops.iter().enumerate() {
        for n in EXTENTS {
            let kern = f32_map(n, op);
            if n >= 4 {
                assert!(is_vector(&clif(&kern)), "op {k} at {n} not vectorized");
            }
            let x = special_f32(n);
            let z: Vec<f32> = special_f32(n + 5)[5..].to_vec();
            for s in [-0.0, f32::NAN] {
                let v =
                    run_kernel_with(&kern, &[f32s(&x), f32s(&z), f32s(&[s])], &[n * 4], 0, true);
                let sc =
                    run_kernel_with(&kern, &[f32s(&x), f32s(&z), f32s(&[s])], &[n * 4], 0, false);
                assert_eq!(v, sc, "op {k} n {n} s {s}");
            }
        }
    }
}

#[test]
fn f64_arithmetic_matches_scalar() {
    for n in EXTENTS {
        let mut b = Builder::new("t");
        let x = b.buffer(Place::Input(0), DType::F64, &[n]);
        let y = b.buffer(Place::Output(0), DType::F64, &[n]);
        b.for_(n, |b, i| {
            let v = b.load(&x, i.clone());
            let v = b.let_(v);
            let r = v
                .clone()
                .mul(v.clone())
                .sub(Expr::f64(1.0))
                .max(v.clone().div(Expr::f64(-0.0)));
            b.store(
                &y,
                i,
                Expr::select(v.clone().le(Expr::f64(2.0)), r, v.sqrt()),
            );
        });
        let k = b.finish().unwrap();
        if n >= 5 {
            assert!(clif(&k).contains("f64x2"));
        }
        let xs: Vec<u8> = special_f32(n)
            .iter()
            .flat_map(|v| (*v as f64).to_le_bytes())
            .collect();
        both(&k, &[xs], &[n * 8], 0);
    }
}

/// `y[i] = f(x[i], z[i])` on a `dtype` (integers given as i64 patterns).
fn int_map(dtype: DType, n: usize, f: &dyn Fn(Expr, Expr) -> Expr) -> Kernel {
    let mut b = Builder::new("t");
    let x = b.buffer(Place::Input(0), dtype, &[n]);
    let z = b.buffer(Place::Input(1), dtype, &[n]);
    let y = b.buffer(Place::Output(0), dtype, &[n]);
    b.for_(n, |b, i| {
        let xv = b.load(&x, i.clone());
        let xv = b.let_(xv);
        let zv = b.load(&z, i.clone());
        let zv = b.let_(zv);
        let v = f(xv, zv);
        b.store(&y, i, v);
    });
    b.finish().unwrap()
}

fn int_bytes(size: usize, n: usize, seed: u64) -> Vec<u8> {
    let pool: [i64; 9] = [0, 1, -1, i64::MAX, i64::MIN, 0x7f, 0x80, 12345, -98765];
    (0..n)
        .flat_map(|i| {
            let v = pool[(i * 5 + seed as usize) % pool.len()] ^ (i as i64 * 0x0101_0101_0101);
            v.to_le_bytes()[..size].to_vec()
        })
        .collect()
}

fn int_op(name: &str, x: Expr, z: Expr) -> Expr {
    let t = x.ty;
    match name {
        "add" => x.add(z),
        "sub" => x.sub(z),
        "mul" => x.mul(z),
        "minmax" => x.clone().min(z.clone()).xor(x.max(z)),
        "absneg" => x.abs().or(z.neg()).and(Expr::int(t, 0).not()),
        "shift" => x.clone().shl(Expr::int(t, 3)).add(x.shr(Expr::int(t, 33))),
        _ => Expr::select(x.clone().lt(z.clone()), x.clone(), z.clone().sub(x.clone()))
            .add(x.ge(z).cast(t)),
    }
}

#[test]
fn integer_ops_wrap_like_scalar() {
    let types = [
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
    ];
    for name in ["add", "sub", "mul", "minmax", "absneg", "shift", "cmp"] {
        for dt in types {
            let size = Ty::storage(dt).unwrap().bytes();
            for n in [0, 3, 17, 67] {
                let k = int_map(dt, n, &|x, z| int_op(name, x, z));
                if n >= 16 && !(size == 1 && matches!(name, "mul" | "shift")) {
                    assert!(is_vector(&clif(&k)), "{name} {dt} {n}");
                }
                both(
                    &k,
                    &[int_bytes(size, n, 1), int_bytes(size, n, 4)],
                    &[n * size],
                    0,
                );
            }
        }
    }
}

#[test]
fn i32_vectorizes_and_i8_mul_stays_scalar() {
    let k = int_map(DType::I32, 17, &|x, z| x.mul(z));
    assert!(clif(&k).contains("i32x4"));
    let k = int_map(DType::I8, 17, &|x, z| x.mul(z));
    assert!(!is_vector(&clif(&k)));
    let k = int_map(DType::I8, 17, &|x, z| x.add(z));
    assert!(clif(&k).contains("i8x16"));
    // Integer division never vectorizes.
    let k = int_map(DType::I32, 17, &|x, z| x.div(z));
    assert!(!is_vector(&clif(&k)));
    let size = 4;
    both(
        &k,
        &[int_bytes(size, 17, 1), int_bytes(size, 17, 2)],
        &[17 * size],
        0,
    );
}

#[test]
fn float_int_casts_saturate_like_scalar() {
    for n in EXTENTS {
        let mut b = Builder::new("t");
        let x = b.buffer(Place::Input(0), DType::F32, &[n]);
        let u = b.buffer(Place::Input(1), DType::U32, &[n]);
        let yi = b.buffer(Place::Output(0), DType::I32, &[n]);
        let yu = b.buffer(Place::Output(1), DType::U32, &[n]);
        let yf = b.buffer(Place::Output(2), DType::F32, &[n]);
        b.for_(n, |b, i| {
            let v = b.load(&x, i.clone());
            let v = b.let_(v);
            b.store(&yi, i.clone(), v.clone().cast(Ty::I32));
            b.store(&yu, i.clone(), v.cast(Ty::U32));
            let w = b.load(&u, i.clone());
            let w = b.let_(w);
            b.store(
                &yf,
                i,
                w.clone()
                    .cast(Ty::F32)
                    .add(w.bitcast(Ty::I32).cast(Ty::F32)),
            );
        });
        let k = b.finish().unwrap();
        if n >= 4 {
            assert!(clif(&k).contains("f32x4"));
        }
        let us: Vec<u8> = (0..n as u32)
            .flat_map(|i| {
                [u32::MAX, 16_777_217, 0x8000_0001, i, 0xffff_ff7f][i as usize % 5].to_le_bytes()
            })
            .collect();
        both(&k, &[f32s(&special_f32(n)), us], &[n * 4, n * 4, n * 4], 0);
    }
}

#[test]
fn bool_bodies_use_byte_lanes() {
    for n in EXTENTS {
        let mut b = Builder::new("t");
        let p = b.buffer(Place::Input(0), DType::Bool, &[n]);
        let q = b.buffer(Place::Input(1), DType::U8, &[n]);
        let y = b.buffer(Place::Output(0), DType::Bool, &[n]);
        let w = b.buffer(Place::Output(1), DType::U8, &[n]);
        b.for_(n, |b, i| {
            let pv = b.load(&p, i.clone());
            let qv = b.load(&q, i.clone());
            let qv = b.let_(qv);
            let c = qv.clone().gt(Expr::int(Ty::U8, 100));
            let c = b.let_(c);
            b.store(
                &y,
                i.clone(),
                pv.clone()
                    .and(c.clone())
                    .or(pv.clone().not().xor(c.clone())),
            );
            b.store(&w, i, Expr::select(c, qv.clone(), pv.cast(Ty::U8).add(qv)));
        });
        let k = b.finish().unwrap();
        if n >= 16 {
            assert!(clif(&k).contains("i8x16"));
        }
        let ps: Vec<u8> = (0..n).map(|i| (i % 3 == 0) as u8).collect();
        let qs: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
        let (code, outs) = both(&k, &[ps.clone(), qs.clone()], &[n, n], 0);
        assert_eq!(code, 0);
        for i in 0..n {
            let (pv, c) = (ps[i] == 1, qs[i] > 100);
            assert_eq!(outs[0][i], ((pv && c) || (!pv ^ c)) as u8);
        }
    }
}

/// Rows of a 2-D nest: the inner loop is vectorized with the outer index invariant, and a
/// broadcast row vector is read contiguously.
#[test]
fn nest_with_broadcast_row() {
    for cols in [1, 3, 4, 5, 17] {
        let rows = 3;
        let mut b = Builder::new("t");
        let x = b.buffer(Place::Input(0), DType::F32, &[rows, cols]);
        let r = b.buffer(Place::Input(1), DType::F32, &[cols]);
        let y = b.buffer(Place::Output(0), DType::F32, &[rows, cols]);
        b.nest(&[rows, cols], |b, idx| {
            let at = super::expr::linear(idx, &[cols, 1]);
            let v = b.load(&x, at.clone());
            let w = b.load(&r, idx[1].clone());
            b.store(&y, at, v.mul(w));
        });
        let k = b.finish().unwrap();
        if cols >= 4 {
            assert!(clif(&k).contains("f32x4"), "{cols}");
        }
        let xs = special_f32(rows * cols);
        let rs: Vec<f32> = (0..cols).map(|c| c as f32 - 2.0).collect();
        both(&k, &[f32s(&xs), f32s(&rs)], &[rows * cols * 4], 0);
    }
}

/// Copies input 0 into scratch at 0, runs `f` there in place, copies scratch out.
fn in_place(n: usize, shift: i64, len: usize) -> Kernel {
    let mut b = Builder::new("t");
    let x = b.buffer(Place::Input(0), DType::F32, &[n]);
    let s = b.buffer(Place::Scratch(0), DType::F32, &[n]);
    let s2: TensorRef = b.buffer(Place::Scratch(0), DType::F32, &[len]);
    let y = b.buffer(Place::Output(0), DType::F32, &[n]);
    b.for_(n, |b, i| {
        let v = b.load(&x, i.clone());
        b.store(&s, i, v);
    });
    b.for_(n - 1, |b, i| {
        let v = b.load(&s, i.clone().add_k(shift));
        b.store(&s2, i, v.add(Expr::f32(1.0)));
    });
    b.for_(n, |b, i| {
        let v = b.load(&s, i.clone());
        b.store(&y, i, v);
    });
    b.finish().unwrap()
}

#[test]
fn aliasing_scratch_stays_exact() {
    let n = 17;
    let xs = f32s(&(0..n).map(|i| i as f32).collect::<Vec<_>>());
    // Same element read and written through two buffers of one slot: vectorized.
    let k = in_place(n, 0, n);
    let (_, outs) = both(&k, std::slice::from_ref(&xs), &[n * 4], n * 4);
    assert_eq!(outs[0][4..8], 2f32.to_le_bytes());
    // Reading the next element of the slot it writes: a loop-carried dependence, scalar.
    let k = in_place(n, 1, n);
    let (_, outs) = both(&k, std::slice::from_ref(&xs), &[n * 4], n * 4);
    assert_eq!(outs[0][0..4], 2f32.to_le_bytes());
    // Overlapping buffers of different extents: still exact.
    let k = in_place(n, 0, n - 1);
    both(&k, &[xs], &[n * 4], n * 4);
}

#[test]
fn unprovable_and_carried_loops_stay_scalar() {
    for n in [16, 17] {
        // An index past the end on the last iteration: the run-time check must fire as before
        // (the vector part is provable only when it ends before the last element).
        let mut b = Builder::new("t");
        let x = b.buffer(Place::Input(0), DType::F32, &[n]);
        let y = b.buffer(Place::Output(0), DType::F32, &[n]);
        b.for_(n, |b, i| {
            let v = b.load(&x, i.clone().add_k(1));
            b.store(&y, i, v);
        });
        let k = b.finish().unwrap();
        assert_eq!(is_vector(&clif(&k)), n == 17);
        let (code, _) = both(&k, &[f32s(&special_f32(n))], &[n * 4], 0);
        assert_eq!(code, super::ir::status::OUT_OF_BOUNDS);
    }
    let n = 17;
    // A float sum carried across iterations is not reassociated.
    let mut b = Builder::new("t");
    let x = b.buffer(Place::Input(0), DType::F32, &[n]);
    let y = b.buffer(Place::Output(0), DType::F32, &[1]);
    let acc = b.mutable(Expr::f32(0.0));
    b.for_(n, |b, i| {
        let v = b.load(&x, i);
        let a = b.get(acc);
        b.set(acc, a.add(v));
    });
    let a = b.get(acc);
    b.store(&y, Expr::idx(0), a);
    let k = b.finish().unwrap();
    assert!(!is_vector(&clif(&k)));
    let xs: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
    let (_, outs) = both(&k, &[f32s(&xs)], &[4], 0);
    let want = xs.iter().fold(0f32, |a, v| a + v);
    assert_eq!(outs[0], want.to_le_bytes());
}

#[test]
fn tiny_loops_unroll_to_straight_line() {
    let mut b = Builder::new("t");
    let x = b.buffer(Place::Input(0), DType::I32, &[3, 4]);
    let y = b.buffer(Place::Output(0), DType::I32, &[3, 4]);
    b.nest(&[3, 4], |b, idx| {
        let at = super::expr::linear(idx, &[4, 1]);
        let v = b.load(&x, at.clone());
        b.store(&y, at, v.mul(idx[0].clone().cast(Ty::I32)));
    });
    let k = b.finish().unwrap();
    let text = clif(&k);
    assert!(!text.contains("brif"), "{text}");
    let xs: Vec<u8> = (0..12i32).flat_map(|v| (v - 5).to_le_bytes()).collect();
    let (_, outs) = both(&k, &[xs], &[48], 0);
    let got: Vec<i32> = outs[0]
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<i32> = (0..12).map(|v| (v - 5) * (v / 4)).collect();
    assert_eq!(got, want);
}

/// Every vectorizable kernel of these tests compiles for AArch64 and RISC-V with V (vector
/// lowerings exist there too), and RISC-V without V gets no vector type at all.
#[test]
fn vector_kernels_compile_on_other_isas() {
    let mut kernels = vec![];
    for name in ["add", "sub", "mul", "minmax", "absneg", "shift", "cmp"] {
        for dt in [
            DType::I8,
            DType::U16,
            DType::I32,
            DType::U32,
            DType::I64,
            DType::U64,
        ] {
            kernels.push(int_map(dt, 19, &|x, z| int_op(name, x, z)));
        }
    }
    kernels.push(f32_map(19, |x, z, s| {
        let c = Expr::select(
            x.clone().lt(z.clone()),
            x.clone().min(z.clone()),
            x.clone().max(s),
        );
        c.add(x.clone().cast(Ty::I32).cast(Ty::F32))
            .add(x.clone().cast(Ty::U32).cast(Ty::F32))
            .add(x.clone().sqrt().abs().neg().floor().nearest())
            .add(x.clone().ge(z).cast(Ty::F32))
            .add(x.bitcast(Ty::I32).cast(Ty::Bool).cast(Ty::F32))
    }));
    for (triple, flags) in [
        ("aarch64-unknown-linux-gnu", &[][..]),
        ("riscv64gc-unknown-linux-gnu", &["has_v"][..]),
        ("riscv64gc-unknown-linux-gnu", &[][..]),
    ] {
        let mut fb = settings::builder();
        fb.set("opt_level", "speed").unwrap();
        let mut ib = cranelift_codegen::isa::lookup_by_name(triple).unwrap();
        for f in flags {
            ib.enable(f).unwrap();
        }
        let isa = ib.finish(settings::Flags::new(fb)).unwrap();
        let facts = IsaFacts::of(&*isa);
        assert_eq!(
            facts.simd,
            triple.starts_with("aarch64") || !flags.is_empty()
        );
        for k in &kernels {
            let mut ctx = cranelift_codegen::Context::new();
            ctx.func =
                Function::with_name_signature(UserFuncName::user(0, 0), kernel_signature(&facts));
            let gvs = vec![None; k.bufs.len()];
            emit_kernel(
                k,
                &mut ctx.func,
                &mut FunctionBuilderContext::new(),
                &facts,
                &gvs,
            );
            let text = ctx.func.display().to_string();
            assert_eq!(
                is_vector(&text),
                facts.simd && is_vector(&clif(k)),
                "{triple} {flags:?}\n{text}"
            );
            ctx.compile(&*isa, &mut Default::default())
                .unwrap_or_else(|e| panic!("{triple} {flags:?}: {:?}\n{text}", e.inner));
        }
    }
}
