//! The operator set: a closed `Op` enum with one variant per operator family, each family declared
//! once with `op_family!` (names, typed attributes, ONNX defaults, text form).
//!
//! Inputs follow the ONNX input order of the newest opset. The importer rewrites older opset forms
//! into these (attributes that later became inputs arrive as constant inputs: Clip min/max, Reduce
//! and Squeeze/Unsqueeze axes, Split sizes, Pad pads, Slice starts/ends). Optional inputs that are
//! absent are empty slots. Where a family keeps an older semantics it has an explicit attribute
//! (Softmax `coerce_2d` for opset < 13).
pub mod attr;
pub mod shapes;
mod types;

pub use types::{DTypeError, infer_dtypes};

use crate::{DType, Tensor};

crate::str_enum! {
    /// Conv/pool `auto_pad`.
    pub enum AutoPad { NotSet = "NOTSET", SameUpper = "SAME_UPPER", SameLower = "SAME_LOWER", Valid = "VALID" }
}
crate::str_enum! {
    /// Pad `mode`.
    pub enum PadMode { Constant = "constant", Reflect = "reflect", Edge = "edge", Wrap = "wrap" }
}
crate::str_enum! {
    /// Gelu `approximate`.
    pub enum GeluApprox { None = "none", Tanh = "tanh" }
}
crate::str_enum! {
    /// Cast `round_mode` (only used for float8e8m0 targets).
    pub enum RoundMode { Up = "up", Down = "down", Nearest = "nearest" }
}

crate::op_family! {
    /// Elementwise functions of one tensor (some with scalar parameters).
    pub enum Unary {
        Abs, Neg, Sqrt, Reciprocal, Exp, Log, Erf, Sign, Round, Floor, Ceil,
        Relu, Sigmoid, Tanh, Softplus, Softsign, Mish, HardSwish, Not, Identity,
        LeakyRelu { alpha: f32 = 0.01 },
        HardSigmoid { alpha: f32 = 0.2, beta: f32 = 0.5 },
        Elu { alpha: f32 = 1.0 },
        Selu { alpha: f32 = 1.673_263_2, gamma: f32 = 1.050_701 },
        Celu { alpha: f32 = 1.0 },
        ThresholdedRelu { alpha: f32 = 1.0 },
        Gelu { approximate: GeluApprox = GeluApprox::None },
        Swish { alpha: f32 = 1.0 },
    }
}

crate::op_family! {
    /// Elementwise functions of two tensors with multidirectional broadcasting
    /// (PRelu: `slope` broadcasts unidirectionally to `X`).
    pub enum Binary {
        Add, Sub, Mul, Div, Pow, PRelu,
        And, Or, Equal, Less, Greater, LessOrEqual, GreaterOrEqual,
    }
}

crate::op_family! {
    /// Elementwise reductions over any number of broadcast inputs.
    pub enum Variadic { Max, Min, Sum, Mean }
}

crate::op_family! {
    /// Elementwise ops of three inputs: `Clip(x, min?, max?)`, `Where(cond, x, y)`.
    pub enum Ternary { Clip, Where }
}

crate::op_family! {
    /// Matrix products. MatMulInteger: (A, B, a_zero_point?, b_zero_point?) -> i32;
    /// QLinearMatMul: (a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp).
    pub enum Linear {
        MatMul,
        Gemm { alpha: f32 = 1.0, beta: f32 = 1.0, trans_a: bool = false, trans_b: bool = false },
        MatMulInteger,
        QLinearMatMul,
    }
}

crate::op_family! {
    /// Linear (de)quantization. `output_dtype: none` means "from the zero point / scale".
    pub enum Quant {
        QuantizeLinear { axis: i64 = 1, block_size: i64 = 0, output_dtype: Option<DType> = None,
                         saturate: bool = true, precision: Option<DType> = None },
        DequantizeLinear { axis: i64 = 1, block_size: i64 = 0, output_dtype: Option<DType> = None },
        DynamicQuantizeLinear,
    }
}

crate::op_family! {
    /// Convolutions. Empty `kernel_shape`/`pads`/`strides`/`dilations` mean "inferred / ONNX default".
    /// ConvInteger: (x, w, x_zero_point?, w_zero_point?) -> i32;
    /// QLinearConv: (x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?).
    pub enum Conv {
        Conv { auto_pad: AutoPad = AutoPad::NotSet, dilations: Vec<i64> = vec![], group: i64 = 1,
               kernel_shape: Vec<i64> = vec![], pads: Vec<i64> = vec![], strides: Vec<i64> = vec![] },
        ConvInteger { auto_pad: AutoPad = AutoPad::NotSet, dilations: Vec<i64> = vec![], group: i64 = 1,
               kernel_shape: Vec<i64> = vec![], pads: Vec<i64> = vec![], strides: Vec<i64> = vec![] },
        QLinearConv { auto_pad: AutoPad = AutoPad::NotSet, dilations: Vec<i64> = vec![], group: i64 = 1,
               kernel_shape: Vec<i64> = vec![], pads: Vec<i64> = vec![], strides: Vec<i64> = vec![] },
    }
}

crate::op_family! {
    /// Spatial pooling. MaxPool may have a second output (indices, i64).
    pub enum Pool {
        MaxPool { auto_pad: AutoPad = AutoPad::NotSet, ceil_mode: bool = false, dilations: Vec<i64> = vec![],
                  kernel_shape: Vec<i64> = vec![], pads: Vec<i64> = vec![], storage_order: i64 = 0,
                  strides: Vec<i64> = vec![] },
        AveragePool { auto_pad: AutoPad = AutoPad::NotSet, ceil_mode: bool = false,
                      count_include_pad: bool = false, dilations: Vec<i64> = vec![],
                      kernel_shape: Vec<i64> = vec![], pads: Vec<i64> = vec![], strides: Vec<i64> = vec![] },
        GlobalAveragePool,
        GlobalMaxPool,
    }
}

crate::op_family! {
    /// Normalizations and softmax. `stash_type` is the ONNX dtype code of the compute precision.
    /// BatchNormalization: (X, scale, B, mean, var) in inference; with `training_mode` it also
    /// returns running mean/var. `coerce_2d` is Softmax/LogSoftmax before opset 13 (flatten to 2-D
    /// at `axis`, normalize each row).
    pub enum Norm {
        BatchNormalization { epsilon: f32 = 1e-5, momentum: f32 = 0.9, training_mode: bool = false },
        LayerNormalization { axis: i64 = -1, epsilon: f32 = 1e-5, stash_type: i64 = 1 },
        RMSNormalization { axis: i64 = -1, epsilon: f32 = 1e-5, stash_type: i64 = 1 },
        InstanceNormalization { epsilon: f32 = 1e-5 },
        Softmax { axis: i64 = -1, coerce_2d: bool = false },
        LogSoftmax { axis: i64 = -1, coerce_2d: bool = false },
    }
}

crate::op_family! {
    /// Reductions; input 1 (optional) holds the axes as i64.
    pub enum Reduce {
        ReduceMean { keepdims: bool = true, noop_with_empty_axes: bool = false },
        ReduceSum { keepdims: bool = true, noop_with_empty_axes: bool = false },
        ReduceMax { keepdims: bool = true, noop_with_empty_axes: bool = false },
        ReduceMin { keepdims: bool = true, noop_with_empty_axes: bool = false },
        ReduceSumSquare { keepdims: bool = true, noop_with_empty_axes: bool = false },
        ReduceL2 { keepdims: bool = true, noop_with_empty_axes: bool = false },
        ArgMax { axis: i64 = 0, keepdims: bool = true, select_last_index: bool = false },
        ArgMin { axis: i64 = 0, keepdims: bool = true, select_last_index: bool = false },
    }
}

impl Reduce {
    /// `(keepdims, noop_with_empty_axes)` of the axes-input reductions (ReduceMean … ReduceL2);
    /// `None` for ArgMax/ArgMin, whose single axis is an attribute.
    pub fn axes_flags_mut(&mut self) -> Option<(&mut bool, &mut bool)> {
        match self {
            Reduce::ReduceMean {
                keepdims,
                noop_with_empty_axes,
            }
            | Reduce::ReduceSum {
                keepdims,
                noop_with_empty_axes,
            }
            | Reduce::ReduceMax {
                keepdims,
                noop_with_empty_axes,
            }
            | Reduce::ReduceMin {
                keepdims,
                noop_with_empty_axes,
            }
            | Reduce::ReduceSumSquare {
                keepdims,
                noop_with_empty_axes,
            }
            | Reduce::ReduceL2 {
                keepdims,
                noop_with_empty_axes,
            } => Some((keepdims, noop_with_empty_axes)),
            Reduce::ArgMax { .. } | Reduce::ArgMin { .. } => None,
        }
    }

    /// Read-only form of [`Reduce::axes_flags_mut`].
    pub fn axes_flags(&self) -> Option<(bool, bool)> {
        self.clone().axes_flags_mut().map(|(k, n)| (*k, *n))
    }
}

crate::op_family! {
    /// Data movement and shape computation. Shape-like inputs are i64 tensors:
    /// Reshape(data, shape), Squeeze/Unsqueeze(data, axes?), Slice(data, starts, ends, axes?, steps?),
    /// Split(input, split?), Expand(input, shape), Tile(input, repeats),
    /// Pad(data, pads, constant_value?, axes?), ConstantOfShape(shape), Range(start, limit, delta).
    pub enum Layout {
        Reshape { allowzero: bool = false },
        Flatten { axis: i64 = 1 },
        Transpose { perm: Option<Vec<i64>> = None },
        Concat { axis: i64 = 0 },
        Squeeze,
        Unsqueeze,
        Shape { start: i64 = 0, end: Option<i64> = None },
        Gather { axis: i64 = 0 },
        Slice,
        Split { axis: i64 = 0, num_outputs: Option<i64> = None },
        Expand,
        Tile,
        Pad { mode: PadMode = PadMode::Constant },
        ConstantOfShape { value: Option<Tensor> = None },
        Range,
    }
}

crate::op_family! {
    /// Type conversion and Dropout(data, ratio?, training_mode?) -> (output, mask?): identity in
    /// inference; in training a mask drawn deterministically from `seed` (0 when absent).
    pub enum Convert {
        Cast { to: DType = DType::F32, saturate: bool = true, round_mode: RoundMode = RoundMode::Up },
        Dropout { seed: Option<i64> = None },
    }
}

crate::op_family! {
    /// Transformer building blocks. RotaryEmbedding(X, cos_cache, sin_cache, position_ids?);
    /// SwiGLU(A, B) = Swish_alpha(A) * B.
    pub enum Transformer {
        RotaryEmbedding { interleaved: bool = false, num_heads: Option<i64> = None,
                          rotary_embedding_dim: i64 = 0 },
        SwiGLU { alpha: f32 = 1.0 },
    }
}

crate::op_family! {
    /// Ops the optimizer forms by fusion (not ONNX ops). DenseAct(x, W, bias?) =
    /// activation(x · W + bias), W 2-D (transposed first when `trans_b`), bias broadcast along the
    /// last axis; `activation: none` is the identity. It computes exactly what the MatMul → Add →
    /// activation chain it replaces computes.
    pub enum Fused {
        DenseAct { trans_b: bool = false, activation: Option<Unary> = None },
    }
}

/// An activation as an attribute: printed as the op with its attributes (`LeakyRelu{alpha=0.1}`).
impl attr::AttrField for Unary {
    fn print(&self, out: &mut String) {
        out.push_str(self.name());
        self.print_attrs(out);
    }
    fn parse(lx: &mut crate::text::lex::Lexer<'_>) -> Result<Self, crate::text::lex::ParseError> {
        let name = lx.ident()?;
        Unary::parse(&name, lx)?
            .ok_or_else(|| lx.error(format!("`{name}` is not an elementwise activation")))
    }
}

/// Index of a constant in [`crate::Graph::consts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(pub u32);

/// An operation. `Input` and `Const` are the graph's sources.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Graph input number `index` (the node's name is the ONNX input name).
    Input {
        index: usize,
    },
    /// A constant (initializer or folded value).
    Const(ConstId),
    Unary(Unary),
    Binary(Binary),
    Variadic(Variadic),
    Ternary(Ternary),
    Linear(Linear),
    Quant(Quant),
    Conv(Conv),
    Pool(Pool),
    Norm(Norm),
    Reduce(Reduce),
    Layout(Layout),
    Convert(Convert),
    Transformer(Transformer),
    Fused(Fused),
}

macro_rules! each_family {
    ($self:expr, $f:ident => $e:expr, $other:expr) => {
        match $self {
            Op::Unary($f) => $e,
            Op::Binary($f) => $e,
            Op::Variadic($f) => $e,
            Op::Ternary($f) => $e,
            Op::Linear($f) => $e,
            Op::Quant($f) => $e,
            Op::Conv($f) => $e,
            Op::Pool($f) => $e,
            Op::Norm($f) => $e,
            Op::Reduce($f) => $e,
            Op::Layout($f) => $e,
            Op::Convert($f) => $e,
            Op::Transformer($f) => $e,
            Op::Fused($f) => $e,
            _ => $other,
        }
    };
}

impl Op {
    /// The op name as printed in the text form and in error messages.
    pub fn name(&self) -> &'static str {
        each_family!(self, f => f.name(), match self {
            Op::Input { .. } => "Input",
            _ => "Const",
        })
    }

    /// Prints the attribute block of the op (empty for none).
    pub fn print_attrs(&self, out: &mut String) {
        each_family!(self, f => f.print_attrs(out), ())
    }

    /// Parses an op (name already read) with its attribute block from the text form.
    pub fn parse_named(
        name: &str,
        lx: &mut crate::text::lex::Lexer<'_>,
    ) -> Result<Option<Op>, crate::text::lex::ParseError> {
        macro_rules! try_family {
            ($($fam:ident),*) => {$(
                if let Some(op) = $fam::parse(name, lx)? {
                    return Ok(Some(Op::$fam(op)));
                }
            )*};
        }
        try_family!(
            Unary,
            Binary,
            Variadic,
            Ternary,
            Linear,
            Quant,
            Conv,
            Pool,
            Norm,
            Reduce,
            Layout,
            Convert,
            Transformer,
            Fused
        );
        Ok(None)
    }

    /// Every op name shrink supports (excluding the `Input`/`Const` sources).
    pub fn all_names() -> Vec<&'static str> {
        [
            Unary::NAMES,
            Binary::NAMES,
            Variadic::NAMES,
            Ternary::NAMES,
            Linear::NAMES,
            Quant::NAMES,
            Conv::NAMES,
            Pool::NAMES,
            Norm::NAMES,
            Reduce::NAMES,
            Layout::NAMES,
            Convert::NAMES,
            Transformer::NAMES,
            Fused::NAMES,
        ]
        .concat()
    }

    /// Whether the op is a source (graph input or constant).
    pub fn is_source(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Const(_))
    }

    /// Whether the op accepts and produces `String` tensors: Equal (strings in, bool out) and
    /// Identity, plus the sources. Every other op's type rule rejects strings.
    pub fn takes_strings(&self) -> bool {
        matches!(
            self,
            Op::Input { .. }
                | Op::Const(_)
                | Op::Binary(Binary::Equal)
                | Op::Unary(Unary::Identity)
        )
    }
}
