//! The cost model `auto` chooses a ternary layer's strategy with: a predicted time per strategy,
//! linear in a few work counts of the layer's shape (the [`features`]), with constants measured
//! by `cargo bench --bench calibrate` on the target and committed (the `[cost]` table of a
//! target profile; [`CostModel::default`] holds the figures of the machine shrink is developed
//! on). Each constant is nanoseconds per unit of its work count, so the model reads as "what
//! one term, digit or multiply-add costs here".
use crate::Strategy;

/// What the model needs to know of a ternary layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerShape {
    /// Output features (rows of the ternary matrix).
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    pub nonzeros: usize,
    /// Rows of activations per call.
    pub batch: usize,
    /// Int8 limbs per activation of `packed` (3 faithful, 1 with `--activations int8`).
    pub limbs: usize,
}

/// Measured nanoseconds per unit of work, per strategy (see [`features`] for the units).
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    /// Per nonzero weight and pass over the batch (`stream` covers two batch rows per f64x2
    /// term when the batch has two or more rows).
    pub stream_term: f64,
    /// Per output element (scale, round, bias, activation).
    pub stream_output: f64,
    /// Per activation digit written (padded columns × batch × limbs).
    pub packed_digit: f64,
    /// Per weight and digit (rows × padded columns × batch × limbs).
    pub packed_weight: f64,
    /// Per output element (reduction, limb combination, finish).
    pub packed_output: f64,
    /// Per activation digit (padded columns × batch × limbs): quantizer and table build.
    pub lut_digit: f64,
    /// Per table lookup (rows padded to 32 × column pairs × batch × limbs).
    pub lut_lookup: f64,
    /// Per output element (limb combination, finish).
    pub lut_output: f64,
    /// Whether `auto` considers `lut`: only where the target's `[cost]` table measured it (has
    /// the `lut_*` constants). The default machine's figures have it slower than `packed`
    /// everywhere, and baseline x86-64 (no SSSE3, no `pshufb`) cannot compile it.
    pub offer_lut: bool,
    /// Per weight of the dense kernel (read once per call: the panels stream through the row
    /// tiles; what a batch-1 product is bound by).
    pub dense_weight: f64,
    /// Per weight beyond [`DENSE_CACHED_WEIGHTS`]: f32 weights that no longer stay in L2
    /// between calls come from memory (4 bytes each, 16 times `packed`'s 2 bits).
    pub dense_spill: f64,
    /// Per multiply-add of the dense kernel (what a large batch is bound by).
    pub dense_mac: f64,
    /// Per output element of the dense kernel.
    pub dense_output: f64,
    /// Per chunk slot of the sparse f32 kernel at batch 1 (one gathered activation, stored
    /// nonzero or padding; see [`SparseShape::slots`]).
    pub sparse_gather: f64,
    /// Per chunk slot and pass of 16 batch rows at batch ≥ 2 (one broadcast weight times a
    /// vector of activations).
    pub sparse_slot: f64,
    /// Per activation (batch × input features): the finiteness check and, at batch ≥ 2, the
    /// transposed copy.
    pub sparse_input: f64,
    /// Per output element of the sparse kernel (the epilogue).
    pub sparse_output: f64,
}

impl Default for CostModel {
    /// Measured with `cargo bench --bench calibrate` on a 2-core Xeon with AVX-512 VNNI
    /// (JIT, one thread); see the bench for how.
    fn default() -> CostModel {
        CostModel {
            stream_term: 0.4569,
            stream_output: 0.8546,
            packed_digit: 0.2308,
            packed_weight: 0.00910,
            packed_output: 4.2090,
            lut_digit: LUT_DEFAULT[0],
            lut_lookup: LUT_DEFAULT[1],
            lut_output: LUT_DEFAULT[2],
            offer_lut: false,
            dense_weight: DENSE_DEFAULT[0],
            dense_spill: DENSE_DEFAULT[1],
            dense_mac: DENSE_DEFAULT[2],
            dense_output: DENSE_DEFAULT[3],
            sparse_gather: SPARSE_DEFAULT[0],
            sparse_slot: SPARSE_DEFAULT[1],
            sparse_input: SPARSE_DEFAULT[2],
            sparse_output: SPARSE_DEFAULT[3],
        }
    }
}

/// The sparse constants of [`CostModel::default`] (gather slot, broadcast slot, input, output),
/// measured by `cargo bench --bench calibrate` on the same machine.
const SPARSE_DEFAULT: [f64; 4] = [0.2882, 0.81442, 1.70787, 0.0];

/// What the model needs to know of an f32 layer with a constant weight for the sparse kernel
/// (`ops/linear/sparse.rs`) and the dense tiles it competes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseShape {
    /// Output features (the weight's columns).
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Rows of activations per call.
    pub batch: usize,
    /// Chunk slots of the sparse layout: 16 per chunk, a block's chunks being its most nonzeros
    /// of a column (nonzeros plus padding).
    pub slots: usize,
    pub nonzeros: usize,
}

/// The work counts of the sparse kernel on `s`, in the order of its constants: gathered slots
/// (batch 1), slots × passes of 16 rows (batch ≥ 2), activations, outputs.
pub fn sparse_features(s: &SparseShape) -> Vec<f64> {
    let slots = s.slots as f64;
    let (gather, broadcast) = if s.batch == 1 {
        (slots, 0.0)
    } else {
        (0.0, slots * s.batch.div_ceil(16) as f64)
    };
    vec![
        gather,
        broadcast,
        (s.batch * s.cols) as f64,
        (s.batch * s.rows) as f64,
    ]
}

/// Estimated read-only data plus code bytes of the sparse kernel: an index (`idx_bytes`) and a
/// value per slot, a count per block of 16 columns, a few KiB of loops.
pub fn sparse_bytes(s: &SparseShape, idx_bytes: usize) -> usize {
    s.slots * (idx_bytes + 4) + 12 * s.rows.div_ceil(16) + 4096
}

/// The lut constants of [`CostModel::default`], from the same calibration run.
const LUT_DEFAULT: [f64; 3] = [0.3749, 0.07663, 3.6610];

/// The dense constants of [`CostModel::default`] (weight, spilled weight, multiply-add,
/// output).
const DENSE_DEFAULT: [f64; 4] = [0.02448, 0.15434, 0.00904, 0.6834];

/// f32 weights (1 MiB) a dense layer keeps in L2 between calls (the L2 of the x86 CPUs shrink
/// is calibrated on is 1–2 MiB per core); the rest is priced as [`CostModel::dense_spill`].
pub const DENSE_CACHED_WEIGHTS: usize = 1 << 18;

/// Columns `packed` pads each row to (whole groups of 256 weights).
pub fn packed_columns(cols: usize) -> usize {
    cols.div_ceil(256) * 256
}

/// Rows `lut` pads to (whole tiles of 32) and the column pairs it covers (padded to 4 pairs).
pub fn lut_padding(rows: usize, cols: usize) -> (usize, usize) {
    (rows.div_ceil(32) * 32, cols.div_ceil(2).div_ceil(4) * 4)
}

/// Estimated code plus read-only data bytes of `strategy` on `l` (what `--optimize size`
/// minimizes): a stream is about 7 bytes of code per term and batch pass; `packed` is 2 bits per
/// padded weight plus a loop of a few KiB; `lut` is 4 bits per padded pair plus its loops;
/// `dense` is 4 bytes per weight plus its loop.
pub fn bytes(strategy: Strategy, l: &LayerShape) -> usize {
    match strategy {
        Strategy::Stream => 7 * l.nonzeros * if l.batch == 1 { 1 } else { l.batch.div_ceil(2) },
        Strategy::Packed => l.rows * packed_columns(l.cols) / 4 + 4096,
        Strategy::Lut => {
            let (rows, pairs) = lut_padding(l.rows, l.cols);
            rows * pairs / 2 + 6144
        }
        Strategy::Dense => 4 * l.rows * l.cols + 2048,
        Strategy::Auto => usize::MAX,
    }
}

/// The work counts of `strategy` on `l`, in the order of that strategy's constants; `None` for
/// a strategy the model does not price (`auto`).
pub fn features(strategy: Strategy, l: &LayerShape) -> Option<Vec<f64>> {
    let (rows, cols, batch) = (l.rows as f64, l.cols as f64, l.batch as f64);
    let outputs = rows * batch;
    Some(match strategy {
        Strategy::Stream => {
            let passes = if l.batch == 1 {
                1.0
            } else {
                l.batch.div_ceil(2) as f64
            };
            vec![l.nonzeros as f64 * passes, outputs]
        }
        Strategy::Packed => {
            let digits = packed_columns(l.cols) as f64 * batch * l.limbs as f64;
            vec![digits, rows * digits, outputs]
        }
        Strategy::Lut => {
            let digits = packed_columns(l.cols) as f64 * batch * l.limbs as f64;
            let (rows, pairs) = lut_padding(l.rows, l.cols);
            let lookups = (rows * pairs) as f64 * batch * l.limbs as f64;
            vec![digits, lookups, outputs]
        }
        Strategy::Dense => {
            let spilled = (l.rows * l.cols).saturating_sub(DENSE_CACHED_WEIGHTS) as f64;
            vec![rows * cols, spilled, rows * cols * batch, outputs]
        }
        Strategy::Auto => return None,
    })
}

impl CostModel {
    /// The constants of `strategy`, in the order of [`features`].
    pub fn constants(&self, strategy: Strategy) -> Option<Vec<f64>> {
        Some(match strategy {
            Strategy::Stream => vec![self.stream_term, self.stream_output],
            Strategy::Packed => vec![self.packed_digit, self.packed_weight, self.packed_output],
            Strategy::Lut => vec![self.lut_digit, self.lut_lookup, self.lut_output],
            Strategy::Dense => vec![
                self.dense_weight,
                self.dense_spill,
                self.dense_mac,
                self.dense_output,
            ],
            Strategy::Auto => return None,
        })
    }

    /// Sets the constants of `strategy` (in the order of [`features`]), e.g. from a fit.
    pub fn set_constants(&mut self, strategy: Strategy, c: &[f64]) {
        match (strategy, c) {
            (Strategy::Stream, [t, o]) => (self.stream_term, self.stream_output) = (*t, *o),
            (Strategy::Packed, [d, w, o]) => {
                (self.packed_digit, self.packed_weight, self.packed_output) = (*d, *w, *o)
            }
            (Strategy::Lut, [d, k, o]) => {
                (self.lut_digit, self.lut_lookup, self.lut_output) = (*d, *k, *o)
            }
            (Strategy::Dense, [w, s, m, o]) => {
                (self.dense_weight, self.dense_spill) = (*w, *s);
                (self.dense_mac, self.dense_output) = (*m, *o);
            }
            _ => panic!("{} constants for strategy {strategy}", c.len()),
        }
    }

    /// The sparse kernel's constants, in the order of [`sparse_features`].
    pub fn sparse_constants(&self) -> Vec<f64> {
        vec![
            self.sparse_gather,
            self.sparse_slot,
            self.sparse_input,
            self.sparse_output,
        ]
    }

    /// Sets the sparse constants (in the order of [`sparse_features`]).
    pub fn set_sparse_constants(&mut self, c: &[f64]) {
        let [g, s, i, o] = c else {
            panic!("{} sparse constants", c.len())
        };
        (self.sparse_gather, self.sparse_slot) = (*g, *s);
        (self.sparse_input, self.sparse_output) = (*i, *o);
    }

    /// Predicted nanoseconds of one call of the sparse kernel on `s`.
    pub fn predict_sparse(&self, s: &SparseShape) -> f64 {
        let f = sparse_features(s);
        f.iter()
            .zip(self.sparse_constants())
            .map(|(f, c)| f * c)
            .sum()
    }

    /// Predicted nanoseconds of one call of the dense tiles on the layer of `s`.
    pub fn predict_tiles(&self, s: &SparseShape) -> f64 {
        let l = LayerShape {
            rows: s.rows,
            cols: s.cols,
            nonzeros: s.nonzeros,
            batch: s.batch,
            limbs: 1,
        };
        self.predict(Strategy::Dense, &l).unwrap_or(f64::INFINITY)
    }

    /// Predicted nanoseconds of one call of layer `l` with `strategy`.
    pub fn predict(&self, strategy: Strategy, l: &LayerShape) -> Option<f64> {
        let f = features(strategy, l)?;
        let c = self.constants(strategy)?;
        Some(f.iter().zip(&c).map(|(f, c)| f * c).sum())
    }

    /// The cost model of a target profile's `[cost]` table: every constant named (the three
    /// `lut_*` ones all or none: with them `auto` considers `lut`; the four `sparse_*` ones all
    /// or none: without them the defaults), each a finite non-negative number.
    pub fn from_table(
        table: &std::collections::BTreeMap<String, f64>,
    ) -> Result<CostModel, String> {
        let mut m = CostModel::default();
        let names = [
            "stream_term",
            "stream_output",
            "packed_digit",
            "packed_weight",
            "packed_output",
            "lut_digit",
            "lut_lookup",
            "lut_output",
            "dense_weight",
            "dense_spill",
            "dense_mac",
            "dense_output",
            "sparse_gather",
            "sparse_slot",
            "sparse_input",
            "sparse_output",
        ];
        for (k, v) in table {
            if !v.is_finite() || *v < 0.0 {
                return Err(format!("cost.{k} = {v}: expected a non-negative number"));
            }
            let slot = match k.as_str() {
                "stream_term" => &mut m.stream_term,
                "stream_output" => &mut m.stream_output,
                "packed_digit" => &mut m.packed_digit,
                "packed_weight" => &mut m.packed_weight,
                "packed_output" => &mut m.packed_output,
                "lut_digit" => &mut m.lut_digit,
                "lut_lookup" => &mut m.lut_lookup,
                "lut_output" => &mut m.lut_output,
                "dense_weight" => &mut m.dense_weight,
                "dense_spill" => &mut m.dense_spill,
                "dense_mac" => &mut m.dense_mac,
                "dense_output" => &mut m.dense_output,
                "sparse_gather" => &mut m.sparse_gather,
                "sparse_slot" => &mut m.sparse_slot,
                "sparse_input" => &mut m.sparse_input,
                "sparse_output" => &mut m.sparse_output,
                _ => {
                    return Err(format!(
                        "cost.{k}: unknown (expected one of {})",
                        names.join(", ")
                    ));
                }
            };
            *slot = *v;
        }
        let is_lut = |n: &str| n.starts_with("lut_");
        m.offer_lut = names.iter().any(|n| is_lut(n) && table.contains_key(*n));
        let is_sparse = |n: &str| n.starts_with("sparse_");
        let sparse = names.iter().any(|n| is_sparse(n) && table.contains_key(*n));
        let missing = names.iter().find(|n| {
            let optional = (is_lut(n) && !m.offer_lut) || (is_sparse(n) && !sparse);
            !optional && !table.contains_key(**n)
        });
        if let Some(missing) = missing {
            return Err(format!("cost.{missing} is missing"));
        }
        Ok(m)
    }

    /// The `[cost]` table of this model, as a target profile spells it.
    pub fn to_toml(&self) -> String {
        format!(
            "[cost]\nstream_term = {:.4}\nstream_output = {:.4}\npacked_digit = {:.4}\npacked_weight = {:.5}\npacked_output = {:.4}\nlut_digit = {:.4}\nlut_lookup = {:.5}\nlut_output = {:.4}\ndense_weight = {:.5}\ndense_spill = {:.5}\ndense_mac = {:.5}\ndense_output = {:.4}\nsparse_gather = {:.5}\nsparse_slot = {:.5}\nsparse_input = {:.5}\nsparse_output = {:.4}\n",
            self.stream_term,
            self.stream_output,
            self.packed_digit,
            self.packed_weight,
            self.packed_output,
            self.lut_digit,
            self.lut_lookup,
            self.lut_output,
            self.dense_weight,
            self.dense_spill,
            self.dense_mac,
            self.dense_output,
            self.sparse_gather,
            self.sparse_slot,
            self.sparse_input,
            self.sparse_output
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_round_trips_and_bad_tables_are_refused() {
        let m = CostModel {
            stream_term: 0.5,
            ..CostModel::default()
        };
        let table: toml_like::Table = toml_like::parse(&m.to_toml());
        let back = CostModel::from_table(&table).unwrap();
        for s in [
            Strategy::Stream,
            Strategy::Packed,
            Strategy::Lut,
            Strategy::Dense,
        ] {
            let (a, b) = (m.constants(s).unwrap(), back.constants(s).unwrap());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-4 * x.abs().max(1e-3), "{s}: {x} vs {y}");
            }
        }
        let mut bad = table.clone();
        bad.insert("stream_term".into(), -1.0);
        assert!(
            CostModel::from_table(&bad)
                .unwrap_err()
                .contains("non-negative")
        );
        let mut bad = table.clone();
        bad.remove("dense_mac");
        assert!(
            CostModel::from_table(&bad)
                .unwrap_err()
                .contains("dense_mac")
        );
        assert_eq!(back.sparse_constants(), m.sparse_constants());
        let mut partial = table.clone();
        partial.remove("sparse_slot");
        assert!(
            CostModel::from_table(&partial)
                .unwrap_err()
                .contains("sparse_slot")
        );
        let mut old = table.clone();
        for k in [
            "sparse_gather",
            "sparse_slot",
            "sparse_input",
            "sparse_output",
        ] {
            old.remove(k);
        }
        let old = CostModel::from_table(&old).unwrap();
        assert_eq!(
            old.sparse_constants(),
            CostModel::default().sparse_constants()
        );
        assert!(back.offer_lut, "a table with the lut constants offers lut");
        let mut old = table.clone();
        for k in ["lut_digit", "lut_lookup", "lut_output"] {
            old.remove(k);
        }
        assert!(!CostModel::from_table(&old).unwrap().offer_lut);
        let mut bad = old.clone();
        bad.insert("lut_digit".into(), 1.0);
        assert!(
            CostModel::from_table(&bad)
                .unwrap_err()
                .contains("lut_lookup")
        );
        let mut bad = table;
        bad.insert("lut_entry".into(), 1.0);
        assert!(CostModel::from_table(&bad).unwrap_err().contains("unknown"));
    }

    /// The model prices work, not names: more rows, columns or batch never cost less.
    #[test]
    fn predictions_grow_with_the_work() {
        let m = CostModel::default();
        let base = LayerShape {
            rows: 64,
            cols: 64,
            nonzeros: 2700,
            batch: 1,
            limbs: 3,
        };
        for s in [
            Strategy::Stream,
            Strategy::Packed,
            Strategy::Lut,
            Strategy::Dense,
        ] {
            let p = m.predict(s, &base).unwrap();
            for bigger in [
                LayerShape {
                    rows: 128,
                    nonzeros: 5400,
                    ..base
                },
                LayerShape {
                    cols: 512,
                    nonzeros: 21600,
                    ..base
                },
                LayerShape { batch: 8, ..base },
            ] {
                assert!(m.predict(s, &bigger).unwrap() > p, "{s}: {bigger:?}");
            }
        }
        assert_eq!(m.predict(Strategy::Auto, &base), None);
    }

    /// A minimal `key = number` reader for the round-trip test (the real reader is the target
    /// profile's TOML parser).
    mod toml_like {
        pub type Table = std::collections::BTreeMap<String, f64>;
        pub fn parse(text: &str) -> Table {
            text.lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
                .collect()
        }
    }
}
