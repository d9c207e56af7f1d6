//! Kernel fusion: an elementwise producer's kernel, `for i in 0..n { t = …; out[i] = f(i) }`,
//! becomes a *virtual buffer* — a scalar function of the flat element index — and is inlined
//! into the kernel that reads `out`: every load `out[e]` there is replaced by the producer's
//! expression at index `e` (its temporaries re-bound before the statement that loads), so the
//! intermediate is never written to memory.
//!
//! The value substituted is the producer's *stored* value (after its dtype encoding: f16/bf16
//! rounding included), so the consumer decodes exactly what it would have read back. The
//! program layer ([`crate::program`]) decides which nodes fuse and keeps their inputs alive.
use super::ir::*;
use super::vectorize::same;
use std::collections::HashMap;
use std::rc::Rc;

/// A kernel in the form `[for pv in 0..n { Set…; Store out[pv] = value }]`.
#[derive(Clone, Debug)]
pub struct Producer {
    pub kernel: Kernel,
    var: VarId,
    sets: Vec<(VarId, Expr)>,
    value: Expr,
}

impl Producer {
    /// `kernel` as a producer, or `None` if it is not a flat map of its output.
    pub fn of(kernel: Kernel) -> Option<Producer> {
        let [Stmt::Loop { var, extent, body }] = kernel.body.as_slice() else {
            return None;
        };
        let (last, sets) = body.split_last()?;
        let Stmt::Store { buf, index, value } = last else {
            return None;
        };
        if !matches!(&*index.kind, ExprKind::Var(v) if v == var)
            || kernel.bufs[buf.0 as usize].len != *extent
        {
            return None;
        }
        let mut pairs = vec![];
        for s in sets {
            match s {
                Stmt::Set { var: t, value } if t != var => pairs.push((*t, value.clone())),
                _ => return None,
            }
        }
        let (var, out, value) = (*var, *buf, value.clone());
        let p = Producer {
            var,
            sets: pairs,
            value,
            kernel,
        };
        let mut loads = vec![];
        for e in p.sets.iter().map(|(_, e)| e).chain([&p.value]) {
            collect_loads(e, &mut loads);
        }
        (!loads.iter().any(|(b, _)| *b == out)).then_some(p)
    }

    /// Byte ranges of the scratch buffers the producer reads (they must stay intact until the
    /// consumer runs).
    pub fn scratch_reads(&self) -> Vec<(usize, usize)> {
        let mut loads = vec![];
        for e in self.sets.iter().map(|(_, e)| e).chain([&self.value]) {
            collect_loads(e, &mut loads);
        }
        loads
            .iter()
            .filter_map(|(b, _)| scratch_range(&self.kernel, *b))
            .collect()
    }
}

fn scratch_range(k: &Kernel, b: BufId) -> Option<(usize, usize)> {
    let d = &k.bufs[b.0 as usize];
    match d.place {
        Place::Scratch(off) => Some((off, off + d.len * d.ty.bytes())),
        _ => None,
    }
}

/// Every load (buffer, index) in `e`.
fn collect_loads(e: &Expr, out: &mut Vec<(BufId, Expr)>) {
    match &*e.kind {
        ExprKind::Lit(_) | ExprKind::Var(_) => {}
        ExprKind::Load { buf, index } => {
            out.push((*buf, index.clone()));
            collect_loads(index, out);
        }
        ExprKind::Unary(_, a) | ExprKind::Cast(a) | ExprKind::Bitcast(a) => collect_loads(a, out),
        ExprKind::Binary(_, a, b) | ExprKind::Cmp(_, a, b) => {
            collect_loads(a, out);
            collect_loads(b, out);
        }
        ExprKind::Select(c, a, b) => {
            collect_loads(c, out);
            collect_loads(a, out);
            collect_loads(b, out);
        }
    }
}

fn mk(ty: Ty, kind: ExprKind) -> Expr {
    Expr {
        ty,
        kind: Rc::new(kind),
    }
}

struct Inliner<'p> {
    p: &'p Producer,
    /// The consumer's buffer holding the producer's output.
    target: BufId,
    buf_off: u32,
    vars: Vec<Ty>,
    var_off: u32,
}

impl Inliner<'_> {
    /// Consumer expression `e` with loads of the target replaced; statements the replacement
    /// needs go to `hoist`.
    fn consumer(
        &mut self,
        e: &Expr,
        hoist: &mut Vec<Stmt>,
        memo: &mut HashMap<*const ExprKind, Expr>,
    ) -> Expr {
        let key = Rc::as_ptr(&e.kind);
        if let Some(r) = memo.get(&key) {
            return r.clone();
        }
        let r = match &*e.kind {
            ExprKind::Lit(_) | ExprKind::Var(_) => e.clone(),
            ExprKind::Load { buf, index } => {
                let index = self.consumer(index, hoist, memo);
                if *buf == self.target {
                    self.site(index, hoist)
                } else {
                    mk(e.ty, ExprKind::Load { buf: *buf, index })
                }
            }
            ExprKind::Unary(op, a) => mk(e.ty, ExprKind::Unary(*op, self.consumer(a, hoist, memo))),
            ExprKind::Cast(a) => mk(e.ty, ExprKind::Cast(self.consumer(a, hoist, memo))),
            ExprKind::Bitcast(a) => mk(e.ty, ExprKind::Bitcast(self.consumer(a, hoist, memo))),
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.consumer(a, hoist, memo), self.consumer(b, hoist, memo));
                mk(e.ty, ExprKind::Binary(*op, a, b))
            }
            ExprKind::Cmp(op, a, b) => {
                let (a, b) = (self.consumer(a, hoist, memo), self.consumer(b, hoist, memo));
                mk(e.ty, ExprKind::Cmp(*op, a, b))
            }
            ExprKind::Select(c, a, b) => {
                let c = self.consumer(c, hoist, memo);
                let (a, b) = (self.consumer(a, hoist, memo), self.consumer(b, hoist, memo));
                mk(e.ty, ExprKind::Select(c, a, b))
            }
        };
        memo.insert(key, r.clone());
        r
    }

    /// The producer's value at `index`: its temporaries get fresh variables (each stays
    /// assigned once, which the emitter's proofs and the vectorizer rely on).
    fn site(&mut self, index: Expr, hoist: &mut Vec<Stmt>) -> Expr {
        let mut rename: HashMap<VarId, VarId> = HashMap::new();
        let mut memo = HashMap::new();
        for (v, value) in &self.p.sets {
            let value = self.producer(value, &index, &rename, &mut memo);
            let nv = VarId(self.var_off + self.vars.len() as u32);
            self.vars.push(value.ty);
            rename.insert(*v, nv);
            hoist.push(Stmt::Set { var: nv, value });
        }
        self.producer(&self.p.value.clone(), &index, &rename, &mut memo)
    }

    fn producer(
        &self,
        e: &Expr,
        index: &Expr,
        rename: &HashMap<VarId, VarId>,
        memo: &mut HashMap<*const ExprKind, Expr>,
    ) -> Expr {
        let key = Rc::as_ptr(&e.kind);
        if let Some(r) = memo.get(&key) {
            return r.clone();
        }
        let mut go = |x: &Expr| self.producer(x, index, rename, memo);
        let r = match &*e.kind {
            ExprKind::Lit(_) => e.clone(),
            ExprKind::Var(v) if *v == self.p.var => index.clone(),
            ExprKind::Var(v) => mk(e.ty, ExprKind::Var(rename[v])),
            ExprKind::Load { buf, index } => mk(
                e.ty,
                ExprKind::Load {
                    buf: BufId(buf.0 + self.buf_off),
                    index: go(index),
                },
            ),
            ExprKind::Unary(op, a) => mk(e.ty, ExprKind::Unary(*op, go(a))),
            ExprKind::Cast(a) => mk(e.ty, ExprKind::Cast(go(a))),
            ExprKind::Bitcast(a) => mk(e.ty, ExprKind::Bitcast(go(a))),
            ExprKind::Binary(op, a, b) => mk(e.ty, ExprKind::Binary(*op, go(a), go(b))),
            ExprKind::Cmp(op, a, b) => mk(e.ty, ExprKind::Cmp(*op, go(a), go(b))),
            ExprKind::Select(c, a, b) => mk(e.ty, ExprKind::Select(go(c), go(a), go(b))),
        };
        memo.insert(key, r.clone());
        r
    }

    fn stmts(&mut self, body: &[Stmt]) -> Vec<Stmt> {
        let mut out = vec![];
        for s in body {
            let mut hoist = vec![];
            let mut memo = HashMap::new();
            let s = match s {
                Stmt::Set { var, value } => Stmt::Set {
                    var: *var,
                    value: self.consumer(value, &mut hoist, &mut memo),
                },
                Stmt::Store { buf, index, value } => {
                    let index = self.consumer(index, &mut hoist, &mut memo);
                    Stmt::Store {
                        buf: *buf,
                        index,
                        value: self.consumer(value, &mut hoist, &mut memo),
                    }
                }
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let cond = self.consumer(cond, &mut hoist, &mut memo);
                    Stmt::If {
                        cond,
                        then: self.stmts(then),
                        otherwise: self.stmts(otherwise),
                    }
                }
                Stmt::Loop { var, extent, body } => Stmt::Loop {
                    var: *var,
                    extent: *extent,
                    body: self.stmts(body),
                },
                Stmt::Fail { code } => Stmt::Fail { code: *code },
                // Only elementwise kernels consume fused values, and they have no native parts.
                Stmt::Native(n) => Stmt::Native(n.clone()),
            };
            out.extend(hoist);
            out.push(s);
        }
        out
    }
}

/// `consumer` with every load of its buffer `target` (the producer's output) computed inline
/// from `p`. `None` when that would be wrong: a buffer the producer reads shares memory with
/// one the consumer writes, other than the same element written after it is read.
pub fn inline(consumer: &Kernel, target: BufId, p: &Producer) -> Option<Kernel> {
    let mut k = consumer.clone();
    let buf_off = k.bufs.len() as u32;
    let table_off = k.tables.len();
    for d in &p.kernel.bufs {
        let mut d = d.clone();
        if let Place::Table(t) = d.place {
            d.place = Place::Table(t + table_off);
        }
        k.bufs.push(d);
    }
    k.tables.extend(p.kernel.tables.iter().cloned());
    k.vars.extend(p.kernel.vars.iter().copied());
    let mut inl = Inliner {
        p,
        target,
        buf_off,
        vars: vec![],
        var_off: k.vars.len() as u32,
    };
    k.body = inl.stmts(&consumer.body);
    k.vars.extend(inl.vars);
    // Memory: the producer's reads now happen inside the consumer, next to its writes.
    let reads: Vec<BufId> = {
        let mut loads = vec![];
        for e in p.sets.iter().map(|(_, e)| e).chain([&p.value]) {
            collect_loads(e, &mut loads);
        }
        loads.iter().map(|(b, _)| BufId(b.0 + buf_off)).collect()
    };
    for r in reads {
        let Some(rr) = scratch_range(&k, r) else {
            continue;
        };
        for w in 0..buf_off {
            let w = BufId(w);
            if stores(&k.body, w) == 0 {
                continue;
            }
            let Some(wr) = scratch_range(&k, w) else {
                continue;
            };
            if rr.0 < wr.1 && wr.0 < rr.1 {
                let same_elems = rr.0 == wr.0
                    && k.bufs[r.0 as usize].ty.bytes() == k.bufs[w.0 as usize].ty.bytes();
                if !same_elems || !read_before_write(&k.body, r, w) {
                    return None;
                }
            }
        }
    }
    Some(k)
}

/// How many Store statements write `w`.
fn stores(body: &[Stmt], w: BufId) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::Store { buf, .. } => (*buf == w) as usize,
            Stmt::Loop { body, .. } => stores(body, w),
            Stmt::If {
                then, otherwise, ..
            } => stores(then, w) + stores(otherwise, w),
            _ => 0,
        })
        .sum()
}

/// Whether `w` is stored exactly once, and every load of `r` is of the element that store
/// writes, in a statement of the same list at or before the store.
fn read_before_write(body: &[Stmt], r: BufId, w: BufId) -> bool {
    fn all_loads(s: &Stmt, l: &mut Vec<(BufId, Expr)>) {
        match s {
            Stmt::Set { value, .. } => collect_loads(value, l),
            Stmt::Store { index, value, .. } => {
                collect_loads(index, l);
                collect_loads(value, l);
            }
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                collect_loads(cond, l);
                for s in then.iter().chain(otherwise) {
                    all_loads(s, l);
                }
            }
            Stmt::Loop { body, .. } => {
                for s in body {
                    all_loads(s, l);
                }
            }
            Stmt::Fail { .. } | Stmt::Native(_) => {}
        }
    }
    fn loads_in(s: &Stmt, r: BufId) -> Vec<Expr> {
        let mut l = vec![];
        all_loads(s, &mut l);
        l.into_iter()
            .filter(|(b, _)| *b == r)
            .map(|(_, i)| i)
            .collect()
    }
    fn find(body: &[Stmt], r: BufId, w: BufId) -> Option<bool> {
        let at = body
            .iter()
            .position(|s| matches!(s, Stmt::Store { buf, .. } if *buf == w));
        if let Some(at) = at {
            let Stmt::Store { index, .. } = &body[at] else {
                unreachable!()
            };
            let ok = body.iter().enumerate().all(|(j, s)| {
                let l = loads_in(s, r);
                l.is_empty() || (j <= at && l.iter().all(|i| same(i, index)))
            });
            return Some(ok);
        }
        for s in body {
            let found = match s {
                Stmt::Loop { body, .. } => find(body, r, w),
                Stmt::If {
                    then, otherwise, ..
                } => find(then, r, w).or_else(|| find(otherwise, r, w)),
                _ => None,
            };
            if found.is_some() {
                // Loads of `r` elsewhere than in the store's own list are not ordered by it.
                let elsewhere = body
                    .iter()
                    .any(|t| !std::ptr::eq(t, s) && !loads_in(t, r).is_empty());
                return Some(found == Some(true) && !elsewhere);
            }
        }
        None
    }
    stores(body, w) == 1 && find(body, r, w) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::testing::run_kernel;
    use crate::loops::{Builder, Expr};
    use shrink_ir::DType;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Producer `t = relu(x) + 1/3` (stored as `mid`), consumer `y = t * 2 - x`, both over `n`;
    /// `t` at scratch 0, or `x` copied to scratch first when `x_in_scratch` (then `y` may share
    /// its slot at `y_at`). Returns (reference kernel running both, producer, consumer, t).
    fn pair(n: usize, mid: DType, x_in_scratch: Option<usize>) -> (Kernel, Kernel, Kernel, BufId) {
        let mut b = Builder::new("t");
        let xin = b.buffer(Place::Input(0), DType::F32, &[n]);
        let base = 4 * n.div_ceil(16) * 16;
        let x = match x_in_scratch {
            Some(_) => b.buffer(Place::Scratch(2 * base), DType::F32, &[n]),
            None => xin.clone(),
        };
        let t = b.buffer(Place::Scratch(0), mid, &[n]);
        let y = match x_in_scratch {
            Some(at) => b.buffer(Place::Scratch(at), DType::F32, &[n]),
            None => b.buffer(Place::Output(0), DType::F32, &[n]),
        };
        let out = b.buffer(Place::Output(0), DType::F32, &[n]);
        if x_in_scratch.is_some() {
            b.for_(n, |b, i| {
                let v = b.load(&xin, i.clone());
                b.store(&x, i, v);
            });
        }
        b.next_function();
        b.for_(n, |b, i| {
            let v = b.load(&x, i.clone());
            let v = b.let_(v);
            let r = Expr::select(v.clone().lt(Expr::f32(0.0)), Expr::f32(0.0), v);
            b.store(&t, i, r.add(Expr::f32(1.0 / 3.0)));
        });
        b.next_function();
        b.for_(n, |b, i| {
            let v = b.load(&t, i.clone());
            let w = b.load(&x, i.clone());
            b.store(&y, i, v.mul(Expr::f32(2.0)).sub(w));
        });
        b.next_function();
        if x_in_scratch.is_some() {
            b.for_(n, |b, i| {
                let v = b.load(&y, i.clone());
                b.store(&out, i, v);
            });
        }
        let parts = b.finish_all().unwrap();
        let (copy_in, p, c) = if x_in_scratch.is_some() {
            (parts[0].body.clone(), parts[1].clone(), parts[2].clone())
        } else {
            (vec![], parts[0].clone(), parts[1].clone())
        };
        let copy_out = if x_in_scratch.is_some() {
            parts[3].body.clone()
        } else {
            vec![]
        };
        let mut all = p.clone();
        all.body = [copy_in, p.body.clone(), c.body.clone(), copy_out].concat();
        (all, p, c, t.buf)
    }

    fn inputs(n: usize) -> Vec<Vec<u8>> {
        let xs: Vec<f32> = (0..n)
            .map(|i| [1.0001, -2.0, f32::NAN, 0.0, -0.0, 65519.0, 3.0e-6, 7.25][i % 8])
            .collect();
        vec![f32s(&xs)]
    }

    #[test]
    fn fused_matches_separate_kernels_with_f16_rounding() {
        for mid in [DType::F32, DType::F16, DType::BF16] {
            for n in [1, 5, 17] {
                let (all, p, c, t) = pair(n, mid, None);
                let p = Producer::of(p).expect("flat producer");
                let fused = inline(&c, t, &p).expect("no aliasing");
                let want = run_kernel(&all, &inputs(n), &[n * 4], 64 * n);
                let got = run_kernel(&fused, &inputs(n), &[n * 4], 64 * n);
                assert_eq!(got, want, "{mid} {n}");
                // The intermediate is never stored.
                let stores_t =
                    format!("{:?}", fused.body).contains(&format!("buf: BufId({})", t.0));
                assert!(!stores_t);
            }
        }
    }

    #[test]
    fn in_place_slot_is_fused_but_shifted_overlap_is_refused() {
        let n: usize = 17;
        let base = 4 * n.div_ceil(16) * 16;
        // y in x's very slot: each element is read before it is written.
        let (all, p, c, t) = pair(n, DType::F32, Some(2 * base));
        let prod = Producer::of(p.clone()).unwrap();
        let fused = inline(&c, t, &prod).expect("same-element in place");
        let mut run = all.clone();
        let copy_in = all.body[0].clone();
        let copy_out = all.body.last().unwrap().clone();
        run.bufs = fused.bufs.clone();
        run.vars = fused.vars.clone();
        run.body = [
            vec![copy_in.clone()],
            fused.body.clone(),
            vec![copy_out.clone()],
        ]
        .concat();
        let want = run_kernel(&all, &inputs(n), &[n * 4], 64 * n);
        assert_eq!(run_kernel(&run, &inputs(n), &[n * 4], 64 * n), want);
        // y one element past x's start: the inlined reads would see written values.
        let (_, p, c, t) = pair(n, DType::F32, Some(2 * base + 4));
        assert!(inline(&c, t, &Producer::of(p).unwrap()).is_none());
    }

    #[test]
    fn only_flat_maps_are_producers() {
        let mut b = Builder::new("t");
        let x = b.buffer(Place::Input(0), DType::F32, &[4]);
        let y = b.buffer(Place::Output(0), DType::F32, &[4]);
        b.for_(4, |b, i| {
            let v = b.load(&x, i.clone());
            b.store(&y, Expr::int(Ty::I64, 3).sub(i), v);
        });
        assert!(Producer::of(b.finish().unwrap()).is_none());
    }
}
