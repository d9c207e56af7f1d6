//! Measures the constants of shrink's cost model (`shrink_codegen::cost`) on this machine:
//! one-layer ternary models of many shapes, each compiled with every strategy (JIT), timed
//! (median of repeated `run_into` calls), then a least-squares fit per strategy of time against
//! that strategy's work counts, weighted by relative error (a choice between strategies depends
//! on ratios, so a 2 µs layer matters as much as a 2 ms one). Prints the measurements beside the
//! fitted predictions, how often `auto` with the fitted model is within 10% of the fastest
//! strategy, code bytes per nonzero of `stream`, and the `[cost]` table to commit in the target
//! profile. Run: `cargo bench --bench calibrate`.
//!
//! The sparse f32 kernel's constants come from pruned f32 layers (random nonzeros at several
//! densities) timed with the sparse kernel and with the tiles (forced through the cost model:
//! sparse constants of 0 make it always win, huge ones never), fitted the same way; it prints
//! how often the model's choice between the two is within 10% of the faster. `-- --sparse`
//! runs only that part.
use shrink::codegen::cost::{LayerShape, features};
use shrink::codegen::{Activations, CodegenOptions, CostModel, Strategy};
use shrink::ir::Tensor;
use std::time::{Duration, Instant};

mod common;
use common::JitRun;

/// `y = x·W`, W of shape `[cols, rows]`, a third of it zero.
fn layer(rows: usize, cols: usize, batch: usize) -> (shrink::ir::Graph, Vec<Tensor>, usize) {
    let mut rng = shrink::demo::Rng(0xca11_b000 | (rows * 7 + cols * 131 + batch) as u64);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.trit(33) * 0.03).collect();
    let nonzeros = w.iter().filter(|v| **v != 0.0).count();
    let x: Vec<f32> = (0..batch * cols).map(|_| rng.uniform()).collect();
    let model = shrink::demo::matmul_model("calibrate", batch, cols, rows, w);
    let g = shrink::Compiler::new(Default::default())
        .optimized_graph(model.as_slice())
        .expect("optimize");
    (g, vec![Tensor::from_vec(vec![batch, cols], x)], nonzeros)
}

/// Median nanoseconds per call over 15 samples of ~10 ms each.
fn time(run: &mut JitRun) -> f64 {
    run.run();
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed() < Duration::from_millis(2) {
        run.run();
        n += 1;
    }
    let per_sample = ((n as f64) * 5.0).max(1.0) as u32;
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_sample {
                run.run();
            }
            t.elapsed().as_nanos() as f64 / per_sample as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Weighted least squares `min Σ ((f·c − t) / t)²`, by normal equations (a handful of unknowns);
/// a negative constant is fixed at 0 and the rest refitted.
fn fit(rows: &[(Vec<f64>, f64)]) -> Vec<f64> {
    let k = rows[0].0.len();
    let mut fixed = vec![false; k];
    loop {
        let free: Vec<usize> = (0..k).filter(|&i| !fixed[i]).collect();
        let n = free.len();
        let mut a = vec![vec![0.0; n + 1]; n];
        for (f, t) in rows {
            let wt = 1.0 / (t * t);
            for (r, &i) in free.iter().enumerate() {
                for (c, &j) in free.iter().enumerate() {
                    a[r][c] += wt * f[i] * f[j];
                }
                a[r][n] += wt * f[i] * t;
            }
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..n {
            let p = (col..n)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap();
            a.swap(col, p);
            let pivot = a[col].clone();
            for (r, row) in a.iter_mut().enumerate() {
                if r != col && pivot[col] != 0.0 {
                    let m = row[col] / pivot[col];
                    for (x, p) in row.iter_mut().zip(&pivot).skip(col) {
                        *x -= m * p;
                    }
                }
            }
        }
        let mut c = vec![0.0; k];
        for (r, &i) in free.iter().enumerate() {
            c[i] = if a[r][r] != 0.0 {
                a[r][n] / a[r][r]
            } else {
                0.0
            };
        }
        match free.iter().find(|&&i| c[i] < 0.0) {
            Some(&i) => fixed[i] = true,
            None => return c,
        }
    }
}

struct Measured {
    shape: LayerShape,
    /// (strategy, activations, ns)
    times: Vec<(Strategy, Activations, f64)>,
}

/// `y = x·W` with an f32 W of shape `[cols, rows]`, `zeros` of it (a fraction) exactly zero.
fn pruned_layer(
    rows: usize,
    cols: usize,
    batch: usize,
    zeros: f64,
) -> (shrink::ir::Graph, Vec<Tensor>) {
    let mut rng = shrink::demo::Rng(0x5a_0000 | (rows * 7 + cols * 131 + batch) as u64);
    let w: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let keep = (rng.uniform() as f64 + 1.0) / 2.0 >= zeros;
            let v = rng.uniform();
            if keep && v != 0.0 { v * 0.05 } else { 0.0 }
        })
        .collect();
    let x: Vec<f32> = (0..batch * cols).map(|_| rng.uniform()).collect();
    let model = shrink::demo::matmul_model("calibrate", batch, cols, rows, w);
    let g = shrink::Compiler::new(Default::default())
        .optimized_graph(model.as_slice())
        .expect("optimize");
    (g, vec![Tensor::from_vec(vec![batch, cols], x)])
}

/// Times pruned layers with the sparse kernel and the tiles, fits the sparse constants into
/// `model` and prints the table and the choice check.
fn calibrate_sparse(model: &mut CostModel, quick: bool) {
    use shrink::codegen::cost::{SparseShape, sparse_features};
    let mut measured: Vec<(SparseShape, f64, f64)> = vec![];
    let shapes = [
        (64, 64),
        (256, 256),
        (1024, 784),
        (1024, 1024),
        (512, 2048),
        (2048, 512),
    ];
    let densities: &[f64] = if quick {
        &[0.5, 0.9]
    } else {
        &[0.5, 0.75, 0.9, 0.97]
    };
    let batches: &[usize] = if quick { &[1, 8] } else { &[1, 2, 8, 16, 33] };
    for &(rows, cols) in &shapes {
        for &zeros in densities {
            for &batch in batches {
                let (g, inputs) = pruned_layer(rows, cols, batch, zeros);
                let mut times = [0.0; 2];
                let mut shape = None;
                for (t, sparse) in [(0, true), (1, false)] {
                    let mut cost = model.clone();
                    let c = if sparse { 0.0 } else { 1e9 };
                    cost.set_sparse_constants(&[c; 4]);
                    let opts = CodegenOptions {
                        cost,
                        ..Default::default()
                    };
                    let kernel = shrink::compile_jit_with(&g, &opts).expect("compile");
                    if sparse {
                        shape = Some(sparse_shape(&g, batch));
                    }
                    times[t] = time(&mut JitRun::new(kernel, &inputs));
                }
                let shape = shape.expect("one weight");
                eprintln!(
                    "measured pruned {rows}x{cols} {zeros} b{batch}: sparse {:.2} µs, tiles {:.2} µs",
                    times[0] / 1e3,
                    times[1] / 1e3
                );
                measured.push((shape, times[0], times[1]));
            }
        }
    }
    let rows: Vec<(Vec<f64>, f64)> = measured
        .iter()
        .map(|(s, t, _)| (sparse_features(s), *t))
        .collect();
    model.set_sparse_constants(&fit(&rows));
    println!("| layer | zeros | batch | sparse µs | predicted | tiles µs | predicted | chosen |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut within = 0;
    for (s, ts, td) in &measured {
        let (ps, pd) = (model.predict_sparse(s), model.predict_tiles(s));
        let chosen = if ps < pd { *ts } else { *td };
        if chosen <= ts.min(*td) * 1.1 {
            within += 1;
        }
        println!(
            "| {}x{} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            s.rows,
            s.cols,
            1.0 - s.nonzeros as f64 / (s.rows * s.cols) as f64,
            s.batch,
            ts / 1e3,
            ps / 1e3,
            td / 1e3,
            pd / 1e3,
            if ps < pd { "sparse" } else { "tiles" }
        );
    }
    println!(
        "\nsparse vs tiles: the model's choice within 10% of the faster on {within} of {} layers\n",
        measured.len()
    );
}

/// The sparse kernel's shape of the one weight of `g` at `batch` rows.
fn sparse_shape(g: &shrink::ir::Graph, batch: usize) -> shrink::codegen::cost::SparseShape {
    let w = g
        .consts
        .iter()
        .filter(|t| t.dims().len() == 2)
        .max_by_key(|t| t.dims().iter().product::<usize>())
        .expect("a weight");
    let (cols, rows) = (w.dims()[0], w.dims()[1]);
    let v = w.to_f64_vec();
    // The layout groups the columns by descending nonzero count, 16 to a block, each block as
    // long as its first (longest) column.
    let mut counts: Vec<usize> = (0..rows)
        .map(|j| (0..cols).filter(|&p| v[p * rows + j] != 0.0).count())
        .collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let slots = counts.chunks(16).map(|block| 16 * block[0]).sum();
    shrink::codegen::cost::SparseShape {
        rows,
        cols,
        batch,
        slots,
        nonzeros: v.iter().filter(|x| **x != 0.0).count(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--sparse") {
        let mut model = CostModel::default();
        calibrate_sparse(&mut model, quick);
        println!("{}", model.to_toml());
        return;
    }
    let mut shapes = vec![];
    for (rows, cols) in [
        (16, 16),
        (32, 32),
        (64, 64),
        (128, 128),
        (256, 256),
        (512, 512),
        (1024, 1024),
        (64, 512),
        (512, 64),
        (2048, 2048),
    ] {
        for batch in [1, 4, 8] {
            if quick && batch == 4 {
                continue;
            }
            shapes.push((rows, cols, batch));
        }
    }
    let mut measured = vec![];
    let mut code_per_term = vec![];
    for (rows, cols, batch) in shapes {
        let (g, inputs, nonzeros) = layer(rows, cols, batch);
        let mut times = vec![];
        let mut lines = vec![
            (Strategy::Packed, Activations::F32),
            (Strategy::Packed, Activations::Int8),
            (Strategy::Lut, Activations::F32),
            (Strategy::Lut, Activations::Int8),
            (Strategy::Dense, Activations::F32),
        ];
        if nonzeros * batch.div_ceil(2) <= 200_000 {
            lines.push((Strategy::Stream, Activations::F32));
        }
        for (strategy, activations) in lines {
            let opts = CodegenOptions {
                strategy,
                activations,
                ..Default::default()
            };
            let kernel = shrink::compile_jit_with(&g, &opts).expect("compile");
            if strategy == Strategy::Stream {
                code_per_term.push((
                    format!("{rows}x{cols} b{batch}"),
                    kernel.stats().code_bytes as f64 / nonzeros as f64,
                ));
            }
            let mut run = JitRun::new(kernel, &inputs);
            times.push((strategy, activations, time(&mut run)));
        }
        let shape = LayerShape {
            rows,
            cols,
            nonzeros,
            batch,
            limbs: 3,
        };
        eprintln!("measured {rows}x{cols} b{batch}: {times:?}");
        measured.push(Measured { shape, times });
    }

    let mut model = CostModel::default();
    for strategy in [
        Strategy::Stream,
        Strategy::Packed,
        Strategy::Lut,
        Strategy::Dense,
    ] {
        let rows: Vec<(Vec<f64>, f64)> = measured
            .iter()
            .flat_map(|m| {
                m.times
                    .iter()
                    .filter(|(s, _, _)| *s == strategy)
                    .map(|&(s, a, t)| {
                        let limbs = if a == Activations::Int8 { 1 } else { 3 };
                        let shape = LayerShape { limbs, ..m.shape };
                        (features(s, &shape).unwrap(), t)
                    })
            })
            .collect();
        model.set_constants(strategy, &fit(&rows));
    }

    println!("| layer | batch | strategy | measured µs | predicted µs |");
    println!("| --- | --- | --- | --- | --- |");
    let mut within = 0;
    for m in &measured {
        for &(s, a, t) in &m.times {
            let limbs = if a == Activations::Int8 { 1 } else { 3 };
            let p = model.predict(s, &LayerShape { limbs, ..m.shape }).unwrap();
            let label = if a == Activations::Int8 {
                format!("{s}-int8")
            } else {
                s.to_string()
            };
            println!(
                "| {}x{} | {} | {label} | {:.2} | {:.2} |",
                m.shape.rows,
                m.shape.cols,
                m.shape.batch,
                t / 1e3,
                p / 1e3
            );
        }
        // `auto` compares the faithful modes.
        let faithful: Vec<_> = m.times.iter().filter(|t| t.1 == Activations::F32).collect();
        let best = faithful.iter().map(|t| t.2).fold(f64::INFINITY, f64::min);
        let chosen = faithful
            .iter()
            .min_by(|a, b| {
                let pa = model.predict(a.0, &m.shape).unwrap();
                let pb = model.predict(b.0, &m.shape).unwrap();
                pa.total_cmp(&pb)
            })
            .unwrap();
        if chosen.2 <= best * 1.1 {
            within += 1;
        } else {
            println!(
                "  ! {}x{} b{}: the model picks {} ({:.2} µs), the fastest takes {:.2} µs",
                m.shape.rows,
                m.shape.cols,
                m.shape.batch,
                chosen.0,
                chosen.2 / 1e3,
                best / 1e3
            );
        }
    }
    println!(
        "\nauto within 10% of the fastest strategy on {within} of {} layers",
        measured.len()
    );
    println!("stream code bytes per nonzero weight:");
    for (l, b) in &code_per_term {
        println!("  {l}: {b:.1}");
    }
    calibrate_sparse(&mut model, quick);
    println!("\n{}", model.to_toml());
}
