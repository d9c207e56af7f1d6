//! Rules of the `Quant` family: the dtypes QuantizeLinear, DequantizeLinear and
//! DynamicQuantizeLinear accept, the checks of scale and zero point against each other and the
//! input, and where each element finds its scale ([`Granularity`]: per tensor, per axis or per
//! block), the quantization target's range and the precision of the division.
use super::{RuleError, norm_axis};
use crate::DType;

/// The dims (and for the zero point the dtype) of a quantization parameter.
#[derive(Clone, Copy, Debug)]
pub struct Param<'a> {
    pub dtype: DType,
    pub dims: &'a [usize],
}

/// Where each element of the input finds its scale and zero point. The input is seen as
/// `[outer, len, inner]` with `len` along the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    PerTensor,
    /// The scale is `[len]`.
    PerAxis {
        outer: usize,
        len: usize,
        inner: usize,
    },
    /// The scale is the input's shape with `len` cut into `blocks` blocks of `block`:
    /// `[outer, blocks, inner]`.
    Blocked {
        outer: usize,
        len: usize,
        inner: usize,
        blocks: usize,
        block: usize,
    },
}

impl Granularity {
    /// The granularity of a scale of dims `scale` for an input of dims `x`.
    pub fn new(
        x: &[usize],
        scale: &[usize],
        axis: i64,
        block_size: i64,
    ) -> Result<Granularity, RuleError> {
        if scale.iter().product::<usize>() == 1 {
            return Ok(Granularity::PerTensor);
        }
        let a = norm_axis(axis, x.len())?;
        let (outer, len, inner) = (x[..a].iter().product(), x[a], x[a + 1..].iter().product());
        if block_size < 0 {
            return Err(RuleError::invalid(format!(
                "block_size {block_size} is negative"
            )));
        }
        if block_size == 0 {
            if scale != [len] {
                return Err(RuleError::invalid(format!(
                    "per-axis scale of shape {scale:?} for an input of shape {x:?} on axis {a}"
                )));
            }
            return Ok(Granularity::PerAxis { outer, len, inner });
        }
        let block = usize::try_from(block_size)
            .map_err(|_| RuleError::invalid("block_size is too large"))?;
        let blocks = len.div_ceil(block);
        let ok = scale.len() == x.len()
            && scale
                .iter()
                .zip(x)
                .enumerate()
                .all(|(i, (&s, &d))| if i == a { s == blocks } else { s == d });
        if !ok {
            return Err(RuleError::invalid(format!(
                "blocked scale of shape {scale:?} for an input of shape {x:?} (axis {a}, block_size {block})"
            )));
        }
        Ok(Granularity::Blocked {
            outer,
            len,
            inner,
            blocks,
            block,
        })
    }
}

/// `output_dtype`, when given, must be the declared output's dtype.
pub fn check_output_dtype(output_dtype: Option<DType>, to: DType) -> Result<(), RuleError> {
    if output_dtype.is_some_and(|d| d != to) {
        return Err(RuleError::invalid(format!(
            "output_dtype {output_dtype:?} but the output is declared {to}"
        )));
    }
    Ok(())
}

/// Scale and optional zero point checked against each other and the input of dims `x`.
fn granularity(
    x: &[usize],
    scale: &[usize],
    zero_point: Option<Param<'_>>,
    axis: i64,
    block_size: i64,
) -> Result<Granularity, RuleError> {
    let numel = |d: &[usize]| d.iter().product::<usize>();
    if let Some(z) = zero_point
        && numel(z.dims) != numel(scale)
    {
        return Err(RuleError::invalid(format!(
            "zero point of shape {:?} but scale of shape {scale:?}",
            z.dims
        )));
    }
    if numel(scale) == 0 && numel(x) != 0 {
        return Err(RuleError::invalid("the scale is empty"));
    }
    Granularity::new(x, scale, axis, block_size)
}

/// What QuantizeLinear rounds to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuantTarget {
    /// An integer type of range `lo..=hi`: round half to even, add the zero point, saturate.
    Int { lo: f64, hi: f64 },
    /// A float8/float4 type: add the zero point, then the Cast rules.
    Float,
}

/// How QuantizeLinear of input `x` to `to` is done.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantizePlan {
    pub granularity: Granularity,
    pub target: QuantTarget,
    /// The float type the division is carried out (and rounded) in.
    pub precision: DType,
}

/// QuantizeLinear of an input (`x_dtype`, `x`) to `to` with the given scale and zero point.
#[allow(clippy::too_many_arguments)]
pub fn quantize_plan(
    x_dtype: DType,
    x: &[usize],
    scale: Param<'_>,
    zero_point: Option<Param<'_>>,
    to: DType,
    axis: i64,
    block_size: i64,
    precision: Option<DType>,
) -> Result<QuantizePlan, RuleError> {
    if !matches!(x_dtype, DType::F32 | DType::F16 | DType::BF16 | DType::I32) {
        return Err(RuleError::unsupported(format!(
            "QuantizeLinear of a {x_dtype} input"
        )));
    }
    let granularity = granularity(x, scale.dims, zero_point, axis, block_size)?;
    if let Some(z) = zero_point
        && z.dtype != to
    {
        return Err(RuleError::invalid(format!(
            "zero point is {} but the output is declared {to}",
            z.dtype
        )));
    }
    let target = match to {
        DType::U8 => QuantTarget::Int { lo: 0.0, hi: 255.0 },
        DType::I8 => QuantTarget::Int {
            lo: -128.0,
            hi: 127.0,
        },
        DType::U16 => QuantTarget::Int {
            lo: 0.0,
            hi: 65535.0,
        },
        DType::I16 => QuantTarget::Int {
            lo: -32768.0,
            hi: 32767.0,
        },
        DType::U4 => QuantTarget::Int { lo: 0.0, hi: 15.0 },
        DType::I4 => QuantTarget::Int { lo: -8.0, hi: 7.0 },
        DType::U2 => QuantTarget::Int { lo: 0.0, hi: 3.0 },
        DType::I2 => QuantTarget::Int { lo: -2.0, hi: 1.0 },
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F4E2M1 => {
            QuantTarget::Float
        }
        _ => {
            return Err(RuleError::unsupported(format!("QuantizeLinear to {to}")));
        }
    };
    // An integer precision means numpy's true division (f64); e8m0 scales are powers of two.
    let precision = match precision.unwrap_or(scale.dtype) {
        d @ (DType::F16 | DType::BF16 | DType::F32 | DType::F64) => d,
        d if d.is_narrow_float() => DType::F32,
        _ => DType::F64,
    };
    Ok(QuantizePlan {
        granularity,
        target,
        precision,
    })
}

/// DequantizeLinear of an input (`x_dtype`, `x`) to `to` with the given scale and zero point.
pub fn dequantize_plan(
    x_dtype: DType,
    x: &[usize],
    scale: &[usize],
    zero_point: Option<Param<'_>>,
    to: DType,
    axis: i64,
    block_size: i64,
) -> Result<Granularity, RuleError> {
    let ok_input = matches!(
        x_dtype,
        DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I32
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F4E2M1
    );
    if !ok_input {
        return Err(RuleError::unsupported(format!(
            "DequantizeLinear of a {x_dtype} input"
        )));
    }
    if !matches!(to, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        return Err(RuleError::unsupported(format!("DequantizeLinear to {to}")));
    }
    let g = granularity(x, scale, zero_point, axis, block_size)?;
    if let Some(z) = zero_point
        && z.dtype != x_dtype
    {
        return Err(RuleError::invalid(format!(
            "zero point is {} but the input is {x_dtype}",
            z.dtype
        )));
    }
    Ok(g)
}

/// DynamicQuantizeLinear(x: f32) -> (y: u8, y_scale: f32, y_zero_point: u8); `outputs` are the
/// declared output dtypes (trailing optional ones may be absent).
pub fn check_dynamic_quantize(x_dtype: DType, outputs: &[DType]) -> Result<(), RuleError> {
    if x_dtype != DType::F32 {
        return Err(RuleError::unsupported(format!(
            "DynamicQuantizeLinear of a {x_dtype} input"
        )));
    }
    for (k, (&got, want)) in outputs
        .iter()
        .zip([DType::U8, DType::F32, DType::U8])
        .enumerate()
    {
        if got != want {
            return Err(RuleError::invalid(format!(
                "output {k} is declared {got} but is {want}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(dtype: DType, dims: &[usize]) -> Param<'_> {
        Param { dtype, dims }
    }

    #[test]
    fn granularities() {
        assert_eq!(
            Granularity::new(&[2, 4], &[1], 1, 0),
            Ok(Granularity::PerTensor)
        );
        assert_eq!(
            Granularity::new(&[2, 4], &[4], -1, 0),
            Ok(Granularity::PerAxis {
                outer: 2,
                len: 4,
                inner: 1
            })
        );
        assert_eq!(
            Granularity::new(&[2, 5], &[2, 3], 1, 2),
            Ok(Granularity::Blocked {
                outer: 2,
                len: 5,
                inner: 1,
                blocks: 3,
                block: 2
            })
        );
        assert!(Granularity::new(&[2, 4], &[2, 3], 1, 2).is_err());
        assert!(Granularity::new(&[2, 4], &[4], 1, -1).is_err());
        assert!(Granularity::new(&[2, 4], &[3], 1, 0).is_err());
    }

    #[test]
    fn dtype_rules() {
        let s = p(DType::F32, &[]);
        let plan = quantize_plan(DType::F32, &[3], s, None, DType::I4, 1, 0, None).unwrap();
        assert_eq!(plan.target, QuantTarget::Int { lo: -8.0, hi: 7.0 });
        assert_eq!(plan.precision, DType::F32);
        let plan = quantize_plan(
            DType::F32,
            &[3],
            s,
            None,
            DType::F8E5M2,
            1,
            0,
            Some(DType::I32),
        );
        assert_eq!(
            plan.map(|p| (p.target, p.precision)),
            Ok((QuantTarget::Float, DType::F64))
        );
        assert!(quantize_plan(DType::F64, &[3], s, None, DType::U8, 1, 0, None).is_err());
        assert!(quantize_plan(DType::F32, &[3], s, None, DType::I32, 1, 0, None).is_err());
        let z = Some(p(DType::I8, &[]));
        assert!(quantize_plan(DType::F32, &[3], s, z, DType::U8, 1, 0, None).is_err());
        assert!(dequantize_plan(DType::I8, &[3], &[], z, DType::F16, 1, 0).is_ok());
        assert!(dequantize_plan(DType::I8, &[3], &[], z, DType::I32, 1, 0).is_err());
        assert!(dequantize_plan(DType::F32, &[3], &[], None, DType::F32, 1, 0).is_err());
        assert!(dequantize_plan(DType::U8, &[3], &[], z, DType::F32, 1, 0).is_err());
        assert!(dequantize_plan(DType::U8, &[3], &[0], None, DType::F32, 1, 0).is_err());
        assert!(check_output_dtype(Some(DType::U8), DType::I8).is_err());
        assert!(check_dynamic_quantize(DType::F32, &[DType::U8, DType::F32]).is_ok());
        assert!(check_dynamic_quantize(DType::F32, &[DType::U8, DType::U8]).is_err());
        assert!(check_dynamic_quantize(DType::F16, &[]).is_err());
    }
}
