//! Test support for op lowerings: lowers one op on inputs given as bytes and runs the kernel
//! with [`crate::loops::testing::run_kernel`], so a lowering is checked against values worked
//! out from the interpreter's rules without the rest of the pipeline.
use super::{NodeCtx, lower_node};
use crate::loops::{Builder, Place};
use shrink_ir::{DType, Graph, Op, Tensor, ValueType};
use std::sync::Arc;

/// One input: dtype, dims, little-endian bytes, and whether the lowering sees it as a constant.
pub struct In {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub bytes: Vec<u8>,
    pub constant: bool,
}

impl In {
    pub fn new(dtype: DType, dims: &[usize], bytes: Vec<u8>) -> In {
        In {
            dtype,
            dims: dims.to_vec(),
            bytes,
            constant: false,
        }
    }
    pub fn f32s(dims: &[usize], v: &[f32]) -> In {
        In::new(
            DType::F32,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    pub fn constant(mut self) -> In {
        self.constant = true;
        self
    }
}

/// Lowers one node with `lower` on `ins` (absent optional inputs as `None`; inputs marked
/// constant are also visible through `const_input`) and outputs of the given dtypes and dims,
/// runs it and returns the status and the output bytes, or the lowering's error.
pub fn run_node(
    lower: impl FnOnce(&mut Builder, &NodeCtx) -> super::LowerResult,
    ins: &[Option<In>],
    outs: &[(DType, &[usize])],
) -> Result<(i32, Vec<Vec<u8>>), String> {
    run_node_as(lower, ins, outs, |_| {})
}

/// [`run_node`] on the host with its ISA facts changed by `tweak` (SIMD or FMA off, to run the
/// code paths of a lesser target here).
pub fn run_node_as(
    lower: impl FnOnce(&mut Builder, &NodeCtx) -> super::LowerResult,
    ins: &[Option<In>],
    outs: &[(DType, &[usize])],
    tweak: impl FnOnce(&mut crate::loops::emit::IsaFacts),
) -> Result<(i32, Vec<Vec<u8>>), String> {
    run_node_traced(lower, ins, outs, tweak).map(|(code, outs, _)| (code, outs))
}

/// [`run_node_as`], also returning how many bytes of machine code native pieces placed.
pub fn run_node_traced(
    lower: impl FnOnce(&mut Builder, &NodeCtx) -> super::LowerResult,
    ins: &[Option<In>],
    outs: &[(DType, &[usize])],
    tweak: impl FnOnce(&mut crate::loops::emit::IsaFacts),
) -> Result<(i32, Vec<Vec<u8>>, usize), String> {
    let (k, data, sizes) = lower_one(lower, ins, outs, 1)?;
    let k = single(k)?;
    Ok(crate::loops::testing::run_kernel_traced(
        &k,
        &data,
        &sizes,
        k.workspace_bytes,
        tweak,
    ))
}

/// [`run_node`] lowered for `threads` threads
/// ([`crate::loops::testing::run_split_kernels`]: each split's parts run in reverse order),
/// also returning how many functions the node became.
pub fn run_node_split(
    lower: impl FnOnce(&mut Builder, &NodeCtx) -> super::LowerResult,
    ins: &[Option<In>],
    outs: &[(DType, &[usize])],
    threads: usize,
    tweak: impl Fn(&mut crate::loops::emit::IsaFacts),
) -> Result<(i32, Vec<Vec<u8>>, usize), String> {
    let (kernels, data, sizes) = lower_one(lower, ins, outs, threads)?;
    let scratch = kernels.iter().map(|k| k.workspace_bytes).max().unwrap_or(0);
    let (code, outs) =
        crate::loops::testing::run_split_kernels(&kernels, &data, &sizes, scratch, tweak);
    Ok((code, outs, kernels.len()))
}

fn single(mut kernels: Vec<crate::loops::Kernel>) -> Result<crate::loops::Kernel, String> {
    if kernels.len() != 1 {
        return Err(format!("the node became {} functions", kernels.len()));
    }
    Ok(kernels.remove(0))
}

/// The node's functions, its input bytes and its output sizes.
type Lowered = (Vec<crate::loops::Kernel>, Vec<Vec<u8>>, Vec<usize>);

fn lower_one(
    lower: impl FnOnce(&mut Builder, &NodeCtx) -> super::LowerResult,
    ins: &[Option<In>],
    outs: &[(DType, &[usize])],
    threads: usize,
) -> Result<Lowered, String> {
    let mut g = Graph::new();
    let node = g.add_input("x", ValueType::unknown_shape(DType::F32));
    let mut b = Builder::new("op");
    let mut inputs = vec![];
    let mut consts = vec![];
    let mut data = vec![];
    for t in ins {
        match t {
            Some(t) => {
                inputs.push(Some(b.buffer(Place::Input(data.len()), t.dtype, &t.dims)));
                data.push(t.bytes.clone());
                consts.push(t.constant.then(|| {
                    Arc::new(
                        Tensor::from_bytes(t.dtype, t.dims.clone(), t.bytes.clone().into())
                            .unwrap(),
                    )
                }));
            }
            None => {
                inputs.push(None);
                consts.push(None);
            }
        }
    }
    let outputs: Vec<_> = outs
        .iter()
        .enumerate()
        .map(|(k, (d, dims))| b.buffer(Place::Output(k), *d, dims))
        .collect();
    let sizes: Vec<usize> = outs
        .iter()
        .map(|(d, dims)| d.size() * dims.iter().product::<usize>())
        .collect();
    let options = crate::CodegenOptions {
        threads,
        ..Default::default()
    };
    let cx = NodeCtx {
        graph: &g,
        node,
        inputs,
        outputs,
        consts,
        strategy: options.strategy,
        options: &options,
    };
    lower(&mut b, &cx)?;
    Ok((b.finish_all()?, data, sizes))
}

/// [`run_node`] for an op through the registry; a lowering error fails the test.
pub fn run_op(op: &Op, ins: &[Option<In>], outs: &[(DType, &[usize])]) -> (i32, Vec<Vec<u8>>) {
    run_node(|b, cx| lower_node(b, op, cx), ins, outs).unwrap()
}

pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Deterministic test values in [-1, 1) on a grid of 2⁻¹⁰ (xorshift from `seed`).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2048) as f32 / 1024.0 - 1.0
        })
        .collect()
}
