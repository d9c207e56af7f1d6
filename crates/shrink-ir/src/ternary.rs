//! Ternary weights: a weight matrix whose every value is `-s`, `0` or `+s`, with one scale `s` for
//! the whole tensor or one per output row. Signs are packed 2 bits per weight (the storage the
//! `packed` kernels read); the scale keeps the original dtype's value exactly.
//!
//! A weight is always viewed as [rows = outputs × cols = inputs]; [`WeightLayout`] says how that
//! view maps onto the tensor's dims (MatMul's B is [inputs, outputs], Gemm with trans_b and Conv
//! weights lead with outputs).
use crate::{DType, Tensor};

/// How the [outputs × inputs] view maps onto the tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightLayout {
    /// Outputs lead: `[rows, cols...]` (Gemm with trans_b, Conv `[M, C/g, k...]`).
    RowsFirst,
    /// Inputs lead: `[cols, rows]` (MatMul B, Gemm without trans_b).
    ColsFirst,
}

/// One magnitude per tensor or per output row.
#[derive(Clone, Debug, PartialEq)]
pub enum TernaryScale {
    PerTensor(f64),
    PerRow(Vec<f64>),
}

impl TernaryScale {
    pub fn kind(&self) -> &'static str {
        match self {
            TernaryScale::PerTensor(_) => "per_tensor",
            TernaryScale::PerRow(_) => "per_row",
        }
    }
}

/// A ternary weight matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryWeights {
    /// The dense tensor's dtype and dims (what `to_tensor` rebuilds).
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub layout: WeightLayout,
    pub rows: usize,
    pub cols: usize,
    /// 2 bits per weight in [row][col] order: 0b00 = 0, 0b01 = +1, 0b11 = −1.
    pub signs: Vec<u8>,
    pub scale: TernaryScale,
}

fn view(dims: &[usize], layout: WeightLayout) -> Option<(usize, usize)> {
    let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    match layout {
        WeightLayout::RowsFirst => {
            let rows = *dims.first()?;
            Some((rows, total.checked_div(rows).unwrap_or(0)))
        }
        WeightLayout::ColsFirst if dims.len() == 2 => Some((dims[1], dims[0])),
        WeightLayout::ColsFirst => None,
    }
}

/// The distinct nonzero magnitudes of a group of weights with their counts, in order of first
/// appearance; more than a few cannot all be within an ulp or two of one.
#[derive(Clone, Default)]
struct Magnitudes(Vec<(f64, usize)>);

impl Magnitudes {
    /// Counts `v`; `false` when the group can no longer be ternary (non-finite, too many
    /// distinct magnitudes).
    fn add(&mut self, v: f64, ulps: u32) -> bool {
        if v == 0.0 {
            return true;
        }
        if !v.is_finite() {
            return false;
        }
        let a = v.abs();
        if let Some((_, n)) = self.0.iter_mut().find(|(m, _)| *m == a) {
            *n += 1;
        } else if self.0.len() > 2 * ulps as usize {
            return false;
        } else {
            self.0.push((a, 1));
        }
        true
    }

    /// The group's magnitude: the most common |value| (the smallest of equally common ones),
    /// accepted when every magnitude is within `ulps` of it; `Some(None)` for an all-zero group.
    /// Taking the mode rather than the first value keeps one rounded outlier from deciding.
    fn settle(&self, ulps: u32, ulp: impl Fn(f64) -> f64) -> Option<Option<f64>> {
        let best = self
            .0
            .iter()
            .fold(None, |best: Option<(f64, usize)>, &(a, n)| match best {
                Some((b, bn)) if bn > n || (bn == n && b < a) => Some((b, bn)),
                _ => Some((a, n)),
            });
        let Some((m, _)) = best else {
            return Some(None);
        };
        let tol = ulps as f64 * ulp(m);
        self.0
            .iter()
            .all(|&(a, _)| (a - m).abs() <= tol)
            .then_some(Some(m))
    }
}

impl TernaryWeights {
    /// Flat index into the dense tensor of view element (r, c).
    pub fn dense_index(&self, r: usize, c: usize) -> usize {
        match self.layout {
            WeightLayout::RowsFirst => r * self.cols + c,
            WeightLayout::ColsFirst => c * self.rows + r,
        }
    }

    /// The sign of view element (r, c): -1, 0 or 1.
    pub fn sign(&self, r: usize, c: usize) -> i8 {
        let i = r * self.cols + c;
        match (self.signs[i / 4] >> ((i % 4) * 2)) & 3 {
            0b01 => 1,
            0b11 => -1,
            _ => 0,
        }
    }

    pub fn row_scale(&self, r: usize) -> f64 {
        match &self.scale {
            TernaryScale::PerTensor(s) => *s,
            TernaryScale::PerRow(v) => v[r],
        }
    }

    pub fn nonzeros(&self) -> usize {
        // A 2-bit code is nonzero iff either bit is set; unused trailing codes are zero.
        self.signs
            .iter()
            .map(|&b| ((b | (b >> 1)) & 0x55).count_ones() as usize)
            .sum()
    }

    /// Recognises `t` as ternary. Values within `ulps` units in the last place of ±s count as ±s
    /// (near-ternary weights from float round-off); `Some` carries the exact ternary form, which
    /// [`Self::to_tensor`] turns back into the dense tensor the graph should use.
    pub fn detect(t: &Tensor, layout: WeightLayout, ulps: u32) -> Option<TernaryWeights> {
        let dtype = t.dtype();
        if !(matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) || dtype.is_int())
        {
            return None;
        }
        let (rows, cols) = view(t.dims(), layout)?;
        if rows == 0 || cols == 0 {
            return None;
        }
        // View coordinates (row, col) of dense element `i`. Every loop below walks the dense
        // tensor in memory order: a column-major walk of a large MatMul weight thrashes caches.
        let view_of = |i: usize| match layout {
            WeightLayout::RowsFirst => (i / cols, i % cols),
            WeightLayout::ColsFirst => (i % rows, i / rows),
        };
        // Distance from `x` to the next representable value above it in the weight's dtype
        // (integers must match exactly).
        let ulp = |x: f64| -> f64 {
            match dtype {
                DType::F32 => {
                    let f = x as f32;
                    (f32::from_bits(f.to_bits() + 1) - f) as f64
                }
                DType::F64 => f64::from_bits(x.to_bits() + 1) - x,
                DType::F16 => {
                    let f = half::f16::from_f64(x);
                    half::f16::from_bits(f.to_bits() + 1).to_f64() - f.to_f64()
                }
                DType::BF16 => {
                    let f = half::bf16::from_f64(x);
                    half::bf16::from_bits(f.to_bits() + 1).to_f64() - f.to_f64()
                }
                _ => 0.0,
            }
        };
        let mut whole = Magnitudes::default();
        let per_tensor = t
            .try_for_each_f64(|_, v| whole.add(v, ulps))
            .then(|| whole.settle(ulps, ulp))
            .flatten();
        let scale = if let Some(s) = per_tensor {
            TernaryScale::PerTensor(s.unwrap_or(0.0))
        } else {
            let mut per = vec![Magnitudes::default(); rows];
            if !t.try_for_each_f64(|i, v| per[view_of(i).0].add(v, ulps)) {
                return None;
            }
            let scales: Option<Vec<f64>> = per
                .iter()
                .map(|m| m.settle(ulps, ulp).map(|s| s.unwrap_or(0.0)))
                .collect();
            TernaryScale::PerRow(scales?)
        };
        let signs = pack_signs(t, rows, cols, layout);
        Some(TernaryWeights {
            dtype,
            dims: t.dims().to_vec(),
            layout,
            rows,
            cols,
            signs,
            scale,
        })
    }

    /// The dense tensor: sign × scale in the original dtype.
    pub fn to_tensor(&self) -> Tensor {
        let size = self.dtype.size();
        let table = self.encoded_codes();
        let mut bytes = vec![0u8; self.rows * self.cols * size];
        for_each_element(self.rows, self.cols, self.layout, |i, r, k| {
            let code = (self.signs[k / 4] >> ((k % 4) * 2)) & 3;
            bytes[i * size..(i + 1) * size].copy_from_slice(&table[r][code as usize][..size]);
        });
        Tensor::from_bytes(self.dtype, self.dims.clone(), bytes.into())
            .expect("sizes computed from dims")
    }

    /// Whether `t` is exactly (bit for bit) the dense tensor [`Self::to_tensor`] would build,
    /// without building it: the verifier and the ternary pass ask this of every annotated
    /// weight, some of them 16M elements large.
    pub fn matches(&self, t: &Tensor) -> bool {
        if t.dtype() != self.dtype || t.dims() != self.dims.as_slice() {
            return false;
        }
        let size = self.dtype.size();
        let (bytes, table) = (&t.bytes()[..], self.encoded_codes());
        if bytes.len() != self.rows * self.cols * size {
            return false;
        }
        match size {
            1 => self.matches_n::<1>(bytes, &table),
            2 => self.matches_n::<2>(bytes, &table),
            4 => self.matches_n::<4>(bytes, &table),
            _ => self.matches_n::<8>(bytes, &table),
        }
    }

    fn matches_n<const N: usize>(&self, bytes: &[u8], table: &[[[u8; 8]; 4]]) -> bool {
        let mut same = true;
        for_each_element(self.rows, self.cols, self.layout, |i, r, k| {
            let code = (self.signs[k / 4] >> ((k % 4) * 2)) & 3;
            same &= element::<N>(bytes, i) == table[r][code as usize][..N];
        });
        same
    }

    /// Per view row, the little-endian bytes of the value each 2-bit code stands for (0, +s,
    /// unused, −s) in the weight's dtype, so decoding is a table lookup per element.
    fn encoded_codes(&self) -> Vec<[[u8; 8]; 4]> {
        let encode = |v: f64| -> [u8; 8] {
            let mut out = [0u8; 8];
            match self.dtype {
                DType::F32 => out[..4].copy_from_slice(&(v as f32).to_le_bytes()),
                DType::F64 => out.copy_from_slice(&v.to_le_bytes()),
                DType::F16 => out[..2].copy_from_slice(&half::f16::from_f64(v).to_le_bytes()),
                DType::BF16 => out[..2].copy_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
                _ => out.copy_from_slice(&(v as i64).to_le_bytes()),
            }
            out
        };
        let per_row = |s: f64| [encode(0.0), encode(s), encode(0.0), encode(-s)];
        match &self.scale {
            TernaryScale::PerTensor(s) => vec![per_row(*s); self.rows],
            TernaryScale::PerRow(v) => v.iter().map(|&s| per_row(s)).collect(),
        }
    }
}

/// Element `i` of `N`-byte elements, as a fixed-size array (a plain load, no `memcmp` call).
fn element<const N: usize>(bytes: &[u8], i: usize) -> [u8; N] {
    bytes[i * N..(i + 1) * N]
        .try_into()
        .expect("slice of N bytes")
}

/// The 2-bit sign codes of `t` in view order ([row][col], 4 per byte).
fn pack_signs(t: &Tensor, rows: usize, cols: usize, layout: WeightLayout) -> Vec<u8> {
    let mut signs = vec![0u8; (rows * cols).div_ceil(4)];
    let raw = &t.bytes()[..];
    let dtype = t.dtype();
    // Sign and zero-ness straight from the bits where elements are whole bytes of IEEE floats
    // or two's-complement integers (NaN and infinities were refused before this point).
    let kind = if matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        Some(true)
    } else if matches!(
        dtype,
        DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
    ) {
        Some(false)
    } else {
        None
    };
    let signed = dtype.is_signed_int() || dtype.is_float();
    let mut put = |k: usize, negative: bool| {
        signs[k / 4] |= if negative { 0b11 } else { 0b01 } << ((k % 4) * 2);
    };
    fn walk<const N: usize>(
        raw: &[u8],
        (rows, cols, layout): (usize, usize, WeightLayout),
        float: bool,
        signed: bool,
        put: &mut impl FnMut(usize, bool),
    ) {
        let top = 1u64 << (8 * N - 1);
        for_each_element(rows, cols, layout, |i, _, k| {
            let mut b = [0u8; 8];
            b[..N].copy_from_slice(&element::<N>(raw, i));
            let bits = u64::from_le_bytes(b);
            let magnitude = if float { bits & !top } else { bits };
            if magnitude != 0 {
                put(k, signed && bits & top != 0);
            }
        });
    }
    let shape = (rows, cols, layout);
    match (kind, dtype.size()) {
        (Some(float), 1) => walk::<1>(raw, shape, float, signed, &mut put),
        (Some(float), 2) => walk::<2>(raw, shape, float, signed, &mut put),
        (Some(float), 4) => walk::<4>(raw, shape, float, signed, &mut put),
        (Some(float), 8) => walk::<8>(raw, shape, float, signed, &mut put),
        _ => for_each_element(rows, cols, layout, |i, _, k| {
            let v = t.get_f64(i);
            if v != 0.0 {
                put(k, v < 0.0);
            }
        }),
    }
    signs
}

/// Calls `f(dense_index, view_row, view_index)` for every element of a `rows × cols` view of a weight
/// stored in `layout` (view index `r·cols + c`). For a column-first weight the two orders are
/// transposes of each other: walking either one in order would touch a new cache line at every
/// step of the other (4096² weights: a second per pass), so the walk goes tile by tile, where
/// both stay within a few dozen lines.
fn for_each_element(
    rows: usize,
    cols: usize,
    layout: WeightLayout,
    mut f: impl FnMut(usize, usize, usize),
) {
    match layout {
        WeightLayout::RowsFirst => {
            for r in 0..rows {
                for k in r * cols..(r + 1) * cols {
                    f(k, r, k);
                }
            }
        }
        WeightLayout::ColsFirst => {
            const TILE: usize = 64;
            for c0 in (0..cols).step_by(TILE) {
                for r0 in (0..rows).step_by(TILE) {
                    for c in c0..(c0 + TILE).min(cols) {
                        for r in r0..(r0 + TILE).min(rows) {
                            f(c * rows + r, r, r * cols + c);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_tensor_and_per_row_detection() {
        // MatMul B = [inputs=3, outputs=2].
        let t = Tensor::from_vec(vec![3, 2], vec![0.5f32, -0.25, 0.0, 0.25, -0.5, 0.0]);
        let w = TernaryWeights::detect(&t, WeightLayout::ColsFirst, 0).unwrap();
        assert_eq!((w.rows, w.cols), (2, 3));
        assert_eq!(w.scale, TernaryScale::PerRow(vec![0.5, 0.25]));
        assert_eq!([w.sign(0, 0), w.sign(0, 1), w.sign(0, 2)], [1, 0, -1]);
        assert_eq!([w.sign(1, 0), w.sign(1, 1), w.sign(1, 2)], [-1, 1, 0]);
        assert_eq!(w.to_tensor(), t);
        assert_eq!(w.nonzeros(), 4);
        let u = Tensor::from_vec(vec![2, 2], vec![0.5f32, -0.5, 0.0, 0.5]);
        let w = TernaryWeights::detect(&u, WeightLayout::RowsFirst, 0).unwrap();
        assert_eq!(w.scale, TernaryScale::PerTensor(0.5));
    }

    #[test]
    fn near_ternary_within_one_ulp_and_not_beyond() {
        let s = 0.1f32;
        let up = f32::from_bits(s.to_bits() + 1);
        let far = f32::from_bits(s.to_bits() + 3);
        let t = Tensor::from_vec(vec![2, 2], vec![s, -up, 0.0, s]);
        let w = TernaryWeights::detect(&t, WeightLayout::RowsFirst, 1).unwrap();
        assert_eq!(
            w.to_tensor(),
            Tensor::from_vec(vec![2, 2], vec![s, -s, 0.0, s])
        );
        assert!(TernaryWeights::detect(&t, WeightLayout::RowsFirst, 0).is_none());
        let t = Tensor::from_vec(vec![1, 2], vec![s, far]);
        assert!(TernaryWeights::detect(&t, WeightLayout::RowsFirst, 1).is_none());
    }

    #[test]
    fn int8_weights() {
        let t = Tensor::from_vec(vec![2, 2], vec![3i8, -3, 0, 3]);
        let w = TernaryWeights::detect(&t, WeightLayout::RowsFirst, 0).unwrap();
        assert_eq!(w.scale, TernaryScale::PerTensor(3.0));
        assert_eq!(w.to_tensor(), t);
        assert!(
            TernaryWeights::detect(
                &Tensor::from_vec(vec![1, 2], vec![1i8, 2]),
                WeightLayout::RowsFirst,
                0
            )
            .is_none()
        );
    }

    /// The raw-bits sign packing and the table-driven decode agree with plain f64 arithmetic for
    /// every whole-byte dtype, both layouts and sizes that are not multiples of the tile; a
    /// single changed element (or a -0.0) is seen by `matches`.
    #[test]
    fn tiled_packing_and_matching_agree_with_f64_per_element() {
        let (rows, cols) = (70, 130);
        let digit = |i: usize| ((i * 7919 + i / 3) % 3) as i64 - 1;
        let scale = 3i64;
        let make = |dtype: DType, f: &dyn Fn(usize) -> f64| -> Tensor {
            let v: Vec<f64> = (0..rows * cols).map(f).collect();
            match dtype {
                DType::F32 => {
                    Tensor::from_vec(vec![cols, rows], v.iter().map(|&x| x as f32).collect())
                }
                DType::F64 => Tensor::from_vec(vec![cols, rows], v),
                DType::F16 => Tensor::from_vec(
                    vec![cols, rows],
                    v.iter().map(|&x| half::f16::from_f64(x)).collect(),
                ),
                DType::BF16 => Tensor::from_vec(
                    vec![cols, rows],
                    v.iter().map(|&x| half::bf16::from_f64(x)).collect(),
                ),
                DType::I8 => {
                    Tensor::from_vec(vec![cols, rows], v.iter().map(|&x| x as i8).collect())
                }
                DType::I32 => {
                    Tensor::from_vec(vec![cols, rows], v.iter().map(|&x| x as i32).collect())
                }
                DType::I64 => {
                    Tensor::from_vec(vec![cols, rows], v.iter().map(|&x| x as i64).collect())
                }
                _ => unreachable!(),
            }
        };
        for dtype in [
            DType::F32,
            DType::F64,
            DType::F16,
            DType::BF16,
            DType::I8,
            DType::I32,
            DType::I64,
        ] {
            for layout in [WeightLayout::ColsFirst, WeightLayout::RowsFirst] {
                let t = make(dtype, &|i| (digit(i) * scale) as f64);
                let w = TernaryWeights::detect(&t, layout, 0).unwrap();
                let view_of = |i: usize| match layout {
                    WeightLayout::RowsFirst => (i / w.cols, i % w.cols),
                    WeightLayout::ColsFirst => (i % w.rows, i / w.rows),
                };
                for i in 0..rows * cols {
                    let (r, c) = view_of(i);
                    assert_eq!(
                        w.sign(r, c) as i64,
                        digit(i),
                        "{dtype} {layout:?} element {i}"
                    );
                }
                assert_eq!(w.to_tensor(), t, "{dtype} {layout:?}");
                assert!(w.matches(&t));
                let changed = make(dtype, &|i| {
                    if i == 4321 {
                        0.0
                    } else {
                        (digit(i) * scale) as f64
                    }
                });
                assert_eq!(w.matches(&changed), digit(4321) == 0, "{dtype} {layout:?}");
                if dtype.is_float() {
                    let negative_zero = make(dtype, &|i| {
                        let d = digit(i);
                        if d == 0 && i == 17 {
                            -0.0
                        } else {
                            (d * scale) as f64
                        }
                    });
                    assert_eq!(w.matches(&negative_zero), digit(17) != 0);
                }
            }
        }
    }
}
