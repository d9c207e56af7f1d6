//! Neural-network ops: matrix products, (de)quantization, convolution, pooling, normalization,
//! softmax and transformer blocks.
use super::{Built, NodeIn, lookup_table, no_builder};
use crate::attrs::Attrs;
use shrink_ir::op::{AutoPad, Conv, Linear, Norm, Pool, Quant, Transformer};
use shrink_ir::{DType, Op};

fn dtype_attr(a: &Attrs<'_>, name: &str) -> Result<Option<DType>, String> {
    match a.int(name, 0)? {
        0 => Ok(None),
        c => DType::from_onnx(c as i32)
            .map(Some)
            .ok_or_else(|| format!("attribute '{name}': unsupported data type {c}")),
    }
}

fn auto_pad(a: &Attrs<'_>) -> Result<AutoPad, String> {
    let s = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    AutoPad::from_str_opt(&s).ok_or_else(|| format!("unknown auto_pad '{s}'"))
}

fn ints(a: &Attrs<'_>, name: &str) -> Result<Vec<i64>, String> {
    Ok(a.ints(name)?.unwrap_or_default())
}

fn linear(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let name = n.proto.op_type.as_str();
    // Each family matches on its variant (not the name) so that a new op cannot compile without
    // its own arm.
    let op = match Linear::with_defaults(name).ok_or_else(|| no_builder(name))? {
        Linear::MatMul => Linear::MatMul,
        // Before opset 7 Gemm's C either matched exactly or set `broadcast`; broadcasting covers both.
        Linear::Gemm { .. } => Linear::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.flag("transA", false)?,
            trans_b: a.flag("transB", false)?,
        },
        Linear::MatMulInteger => Linear::MatMulInteger,
        Linear::QLinearMatMul => Linear::QLinearMatMul,
    };
    n.keep(Op::Linear(op))
}

fn quant(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let name = n.proto.op_type.as_str();
    let op = match Quant::with_defaults(name).ok_or_else(|| no_builder(name))? {
        Quant::QuantizeLinear { .. } => Quant::QuantizeLinear {
            axis: a.int("axis", 1)?,
            block_size: a.int("block_size", 0)?,
            output_dtype: dtype_attr(a, "output_dtype")?,
            saturate: a.flag("saturate", true)?,
            precision: dtype_attr(a, "precision")?,
        },
        Quant::DequantizeLinear { .. } => Quant::DequantizeLinear {
            axis: a.int("axis", 1)?,
            block_size: a.int("block_size", 0)?,
            output_dtype: dtype_attr(a, "output_dtype")?,
        },
        Quant::DynamicQuantizeLinear => Quant::DynamicQuantizeLinear,
    };
    n.keep(Op::Quant(op))
}

fn conv(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let (auto_pad, dilations, group) = (auto_pad(a)?, ints(a, "dilations")?, a.int("group", 1)?);
    let (kernel_shape, pads, strides) = (
        ints(a, "kernel_shape")?,
        ints(a, "pads")?,
        ints(a, "strides")?,
    );
    if group < 1 {
        return Err(format!("group must be positive, found {group}"));
    }
    let name = n.proto.op_type.as_str();
    let op = match Conv::with_defaults(name).ok_or_else(|| no_builder(name))? {
        Conv::Conv { .. } => Conv::Conv {
            auto_pad,
            dilations,
            group,
            kernel_shape,
            pads,
            strides,
        },
        Conv::ConvInteger { .. } => Conv::ConvInteger {
            auto_pad,
            dilations,
            group,
            kernel_shape,
            pads,
            strides,
        },
        Conv::QLinearConv { .. } => Conv::QLinearConv {
            auto_pad,
            dilations,
            group,
            kernel_shape,
            pads,
            strides,
        },
    };
    n.keep(Op::Conv(op))
}

fn pool(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let name = n.proto.op_type.as_str();
    let op = match Pool::with_defaults(name).ok_or_else(|| no_builder(name))? {
        Pool::MaxPool { .. } => Pool::MaxPool {
            auto_pad: auto_pad(a)?,
            ceil_mode: a.flag("ceil_mode", false)?,
            dilations: ints(a, "dilations")?,
            kernel_shape: a
                .ints("kernel_shape")?
                .ok_or("attribute 'kernel_shape' is required")?,
            pads: ints(a, "pads")?,
            storage_order: a.int("storage_order", 0)?,
            strides: ints(a, "strides")?,
        },
        Pool::AveragePool { .. } => Pool::AveragePool {
            auto_pad: auto_pad(a)?,
            ceil_mode: a.flag("ceil_mode", false)?,
            count_include_pad: a.flag("count_include_pad", false)?,
            dilations: ints(a, "dilations")?,
            kernel_shape: a
                .ints("kernel_shape")?
                .ok_or("attribute 'kernel_shape' is required")?,
            pads: ints(a, "pads")?,
            strides: ints(a, "strides")?,
        },
        Pool::GlobalAveragePool => Pool::GlobalAveragePool,
        Pool::GlobalMaxPool => Pool::GlobalMaxPool,
    };
    n.keep(Op::Pool(op))
}

fn norm(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let name = n.proto.op_type.as_str();
    // Before opset 13 softmax flattened the input to 2-D at `axis` (default 1).
    let legacy = n.opset < 13;
    let softmax_axis = || a.int("axis", if legacy { 1 } else { -1 });
    let op = match Norm::with_defaults(name).ok_or_else(|| no_builder(name))? {
        Norm::BatchNormalization { .. } => {
            if n.opset < 9 && a.int("spatial", 1)? == 0 {
                return Err("BatchNormalization with spatial=0 is not supported".into());
            }
            Norm::BatchNormalization {
                epsilon: a.float("epsilon", 1e-5)?,
                momentum: a.float("momentum", 0.9)?,
                training_mode: a.flag("training_mode", false)?,
            }
        }
        Norm::LayerNormalization { .. } => Norm::LayerNormalization {
            axis: a.int("axis", -1)?,
            epsilon: a.float("epsilon", 1e-5)?,
            stash_type: a.int("stash_type", 1)?,
        },
        Norm::RMSNormalization { .. } => Norm::RMSNormalization {
            axis: a.int("axis", -1)?,
            epsilon: a.float("epsilon", 1e-5)?,
            stash_type: a.int("stash_type", 1)?,
        },
        Norm::InstanceNormalization { .. } => Norm::InstanceNormalization {
            epsilon: a.float("epsilon", 1e-5)?,
        },
        Norm::Softmax { .. } => Norm::Softmax {
            axis: softmax_axis()?,
            coerce_2d: legacy,
        },
        Norm::LogSoftmax { .. } => Norm::LogSoftmax {
            axis: softmax_axis()?,
            coerce_2d: legacy,
        },
    };
    n.keep(Op::Norm(op))
}

fn transformer(n: &NodeIn<'_>) -> Result<Built, String> {
    let a = &n.attrs;
    let name = n.proto.op_type.as_str();
    let op = match Transformer::with_defaults(name).ok_or_else(|| no_builder(name))? {
        Transformer::RotaryEmbedding { .. } => Transformer::RotaryEmbedding {
            interleaved: a.flag("interleaved", false)?,
            num_heads: a.opt_int("num_heads")?,
            rotary_embedding_dim: a.int("rotary_embedding_dim", 0)?,
        },
        Transformer::SwiGLU { .. } => Transformer::SwiGLU {
            alpha: a.float("alpha", 1.0)?,
        },
    };
    n.keep(Op::Transformer(op))
}

pub fn lookup(op_type: &str) -> Option<super::Builder> {
    lookup_table(
        op_type,
        &[
            (Linear::NAMES, linear),
            (Quant::NAMES, quant),
            (Conv::NAMES, conv),
            (Pool::NAMES, pool),
            (Norm::NAMES, norm),
            (Transformer::NAMES, transformer),
        ],
    )
}
