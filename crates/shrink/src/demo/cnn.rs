//! The shipped ternary CNN: two ternary conv layers, max pooling, global average pooling and a
//! ternary classifier, with dead channels placed so that sparsity elimination has to work across
//! conv → conv, conv → pool → flatten → dense, and the input expected output is computed here with
//! scalar loops (f64 accumulation, f32 rounding after each layer), independently of the
//! interpreter.
use super::{DemoModel, Rng};
use shrink_ir::{DType, Tensor};
use shrink_onnx::writer::{Attr, ModelBuilder, WDim};

const C0: usize = 3;
const C1: usize = 8;
const C2: usize = 8;
const CLASSES: usize = 4;
const HW: usize = 8;

/// Channels of conv1 that carry nothing: 2 has all-zero outgoing weights in conv2, 5 has all-zero
/// incoming weights and a negative bias (relu keeps it at zero).
pub const CNN_DEAD_CONV1: [usize; 2] = [2, 5];
/// Channels of conv2 that carry nothing: 6 has all-zero incoming weights and a negative bias, 1
/// has all-zero weights in the classifier.
pub const CNN_DEAD_CONV2: [usize; 2] = [1, 6];

/// `(x ⋆ w + b)` for NCHW `x` [c_in, hw, hw] (batch 1), `w` [c_out, c_in, 3, 3], padding 1.
fn conv3x3(x: &[f32], c_in: usize, hw: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
    let c_out = b.len();
    let mut y = vec![0f32; c_out * hw * hw];
    for o in 0..c_out {
        for i in 0..hw {
            for j in 0..hw {
                let mut acc = 0f64;
                for c in 0..c_in {
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let (si, sj) = ((i + ki) as isize - 1, (j + kj) as isize - 1);
                            if si < 0 || sj < 0 || si >= hw as isize || sj >= hw as isize {
                                continue;
                            }
                            let xv = x[(c * hw + si as usize) * hw + sj as usize] as f64;
                            acc += xv * w[((o * c_in + c) * 3 + ki) * 3 + kj] as f64;
                        }
                    }
                }
                y[(o * hw + i) * hw + j] = (acc + b[o] as f64) as f32;
            }
        }
    }
    y
}

fn relu(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = x.max(0.0));
}

/// A ternary conv weight [c_out, c_in, 3, 3] with per-output-channel `scales`.
fn conv_weight(rng: &mut Rng, c_out: usize, c_in: usize, scales: &[f32]) -> Vec<f32> {
    let mut w = Vec::with_capacity(c_out * c_in * 9);
    for &s in scales.iter().take(c_out) {
        for _ in 0..c_in * 9 {
            w.push(s * rng.trit(50));
        }
    }
    w
}

/// conv1 (3→8, 3×3, per-channel ternary scales) → Relu → MaxPool 2×2/2 → conv2 (8→8, 3×3,
/// per-tensor ternary) → Relu → GlobalAveragePool → Flatten → Gemm (transB, ternary) → logits.
pub fn ternary_cnn() -> DemoModel {
    let mut rng = Rng(0xc0de_c0de_0000_0003);
    let s1: Vec<f32> = (0..C1).map(|m| 0.1 + 0.05 * (m % 3) as f32).collect();
    let mut w1 = conv_weight(&mut rng, C1, C0, &s1);
    let mut b1: Vec<f32> = (0..C1).map(|_| 0.1 * rng.uniform()).collect();
    w1[5 * C0 * 9..6 * C0 * 9].fill(0.0);
    b1[5] = -0.3;
    let mut w2 = conv_weight(&mut rng, C2, C1, &[0.08; C2]);
    for o in 0..C2 {
        w2[(o * C1 + 2) * 9..(o * C1 + 3) * 9].fill(0.0);
    }
    let mut b2: Vec<f32> = (0..C2).map(|_| 0.1 * rng.uniform()).collect();
    w2[6 * C1 * 9..7 * C1 * 9].fill(0.0);
    b2[6] = -0.2;
    // Gemm with transB: weight [classes, features].
    let mut w3: Vec<f32> = (0..CLASSES * C2).map(|_| 0.25 * rng.trit(30)).collect();
    for k in 0..CLASSES {
        w3[k * C2 + 1] = 0.0;
    }
    let b3: Vec<f32> = (0..CLASSES).map(|_| 0.1 * rng.uniform()).collect();
    let x: Vec<f32> = (0..C0 * HW * HW).map(|_| rng.uniform()).collect();

    // Reference.
    let mut h1 = conv3x3(&x, C0, HW, &w1, &b1);
    relu(&mut h1);
    let half = HW / 2;
    let mut p1 = vec![0f32; C1 * half * half];
    for c in 0..C1 {
        for i in 0..half {
            for j in 0..half {
                let at = |di: usize, dj: usize| h1[(c * HW + 2 * i + di) * HW + 2 * j + dj];
                p1[(c * half + i) * half + j] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
    let mut h2 = conv3x3(&p1, C1, half, &w2, &b2);
    relu(&mut h2);
    let pooled: Vec<f32> = (0..C2)
        .map(|c| {
            let s: f64 = h2[c * half * half..(c + 1) * half * half]
                .iter()
                .map(|&v| v as f64)
                .sum();
            (s / (half * half) as f64) as f32
        })
        .collect();
    let y: Vec<f32> = (0..CLASSES)
        .map(|k| {
            let acc: f64 = (0..C2)
                .map(|c| pooled[c] as f64 * w3[k * C2 + c] as f64)
                .sum();
            (acc + b3[k] as f64) as f32
        })
        .collect();

    let conv_attrs = [
        ("kernel_shape", Attr::Ints(vec![3, 3])),
        ("pads", Attr::Ints(vec![1, 1, 1, 1])),
    ];
    let mut m = ModelBuilder::new("ternary_cnn", 21);
    m.input(
        "image",
        DType::F32,
        &[
            WDim::Fixed(1),
            WDim::Fixed(C0),
            WDim::Fixed(HW),
            WDim::Fixed(HW),
        ],
    )
    .output(
        "logits",
        DType::F32,
        &[WDim::Fixed(1), WDim::Fixed(CLASSES)],
    )
    .initializer("w1", &Tensor::from_vec(vec![C1, C0, 3, 3], w1))
    .initializer("b1", &Tensor::from_vec(vec![C1], b1))
    .initializer("w2", &Tensor::from_vec(vec![C2, C1, 3, 3], w2))
    .initializer("b2", &Tensor::from_vec(vec![C2], b2))
    .initializer("w3", &Tensor::from_vec(vec![CLASSES, C2], w3))
    .initializer("b3", &Tensor::from_vec(vec![CLASSES], b3))
    .node(
        "Conv",
        "conv1",
        &["image", "w1", "b1"],
        &["c1"],
        &conv_attrs,
    )
    .node("Relu", "relu1", &["c1"], &["r1"], &[])
    .node(
        "MaxPool",
        "pool1",
        &["r1"],
        &["p1"],
        &[
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    )
    .node("Conv", "conv2", &["p1", "w2", "b2"], &["c2"], &conv_attrs)
    .node("Relu", "relu2", &["c2"], &["r2"], &[])
    .node("GlobalAveragePool", "gap", &["r2"], &["g"], &[])
    .node("Flatten", "flatten", &["g"], &["f"], &[])
    .node(
        "Gemm",
        "classifier",
        &["f", "w3", "b3"],
        &["logits"],
        &[("transB", Attr::Int(1))],
    );
    DemoModel {
        name: "ternary_cnn",
        model: m.to_bytes(),
        inputs: vec![("image".into(), Tensor::from_vec(vec![1, C0, HW, HW], x))],
        outputs: vec![("logits".into(), Tensor::from_vec(vec![1, CLASSES], y))],
    }
}
