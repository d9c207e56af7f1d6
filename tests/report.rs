//! `shrink inspect MODEL --html OUT.html`: the page is valid HTML (an HTML5 parser reports no
//! error), every number on it equals `inspect --json`'s and the AOT object sizes equal those of
//! `shrink compile -o X.o` read back, the sign map of a model built here matches a plain-loop
//! downsampling of its weights with the removed lines planted in it, names from the model come
//! out escaped, and a headless Chromium screenshot shows each sign colour in as many pixels as
//! the maps have cells of it (and the dead-line colour where lines were removed).
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;
use shrink::ir::{DType, Tensor};
use shrink::onnx::writer::{ModelBuilder, WDim};
use shrink::report::sign_map::{self, SignGrid};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "shrink-report-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shrink(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_shrink"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "shrink {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn inspect_json(model: &str) -> Value {
    serde_json::from_slice(&shrink(&["inspect", model, "--json"]).stdout).unwrap()
}

/// Runs `inspect --html`, checks the line it prints, returns the page.
fn build_html(model: &str, out: &Path) -> String {
    let o = shrink(&["inspect", model, "--html", out.to_str().unwrap()]);
    let html = std::fs::read_to_string(out).unwrap();
    let layers = inspect_json(model)["layers"].as_array().unwrap().len();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!(
            "wrote {}: {layers} layers, {} bytes",
            out.display(),
            html.len()
        )
    );
    html
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn parse(html: &str) -> Html {
    let doc = Html::parse_document(html);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    assert_eq!(
        doc.select(&sel("script")).count(),
        0,
        "the page has a script"
    );
    doc
}

fn text(e: ElementRef) -> String {
    e.text().collect::<String>()
}

/// The one element under `root` matching `css`.
fn one<'a>(root: ElementRef<'a>, css: &str) -> ElementRef<'a> {
    let selector = sel(css);
    let mut it = root.select(&selector);
    let e = it.next().unwrap_or_else(|| panic!("no {css}"));
    assert!(it.next().is_none(), "several {css}");
    e
}

/// A JSON value as the page shows it.
fn assert_shows(shown: &str, v: &Value, what: &str) {
    match v {
        Value::Null => assert_eq!(shown, "-", "{what}"),
        Value::Bool(b) => assert_eq!(shown, if *b { "yes" } else { "no" }, "{what}"),
        Value::String(s) => assert_eq!(shown, s, "{what}"),
        Value::Number(n) => assert_eq!(
            shown.parse::<f64>().unwrap_or(f64::NAN),
            n.as_f64().unwrap(),
            "{what}: page {shown}, json {n}"
        ),
        _ => panic!("{what}: unexpected {v}"),
    }
}

fn attr(e: ElementRef, name: &str) -> usize {
    e.value()
        .attr(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

/// Every number of `inspect --json` is on the page, in the element its `data-field` names.
fn check_numbers(doc: &Html, json: &Value) {
    let root = doc.root_element();
    for f in ["nodes_before", "nodes_after"] {
        assert_shows(
            &text(one(root, &format!("#model td[data-field=\"{f}\"]"))),
            &json[f],
            f,
        );
    }
    for f in [
        "params",
        "ternary_params",
        "zeros_eliminated",
        "code_bytes",
        "rodata_bytes",
        "scratch_bytes",
    ] {
        assert_shows(
            &text(one(root, &format!("#model td[data-field=\"totals.{f}\"]"))),
            &json["totals"][f],
            f,
        );
    }
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(doc.select(&sel("article.layer")).count(), layers.len());
    for (i, l) in layers.iter().enumerate() {
        let card = one(root, &format!("article.layer[data-index=\"{i}\"]"));
        assert_shows(&text(one(card, "h3[data-field=name]")), &l["name"], "name");
        assert_shows(&text(one(card, "[data-field=op]")), &l["op"], "op");
        for f in [
            "ternary",
            "scale_kind",
            "zeros",
            "nonzeros",
            "dead_rows",
            "dead_cols",
            "strategy",
            "kernel",
            "activations",
            "predicted_us",
            "code_bytes",
            "data_bytes",
        ] {
            let what = format!("layer {} {f}", l["name"]);
            assert_shows(
                &text(one(card, &format!("td[data-field={f}]"))),
                &l[f],
                &what,
            );
        }
        let map = one(card, "svg.signmap");
        let (br, bc) = (attr(map, "data-block-rows"), attr(map, "data-block-cols"));
        let cells = |s: &str| attr(map, &format!("data-cells-{s}"));
        if br * bc == 1 {
            // One cell per weight: the map counts exactly what inspect counts.
            assert_eq!(cells("zero") as u64, l["zeros"].as_u64().unwrap());
            assert_eq!(
                (cells("pos") + cells("neg")) as u64,
                l["nonzeros"].as_u64().unwrap()
            );
        }
        assert_eq!(
            attr(map, "data-dead-rows") as u64,
            l["dead_rows"].as_u64().unwrap()
        );
        assert_eq!(
            attr(map, "data-dead-cols") as u64,
            l["dead_cols"].as_u64().unwrap()
        );
    }
}

/// The object sizes on the page equal those of `shrink compile --target T -o X.o` read back.
fn check_targets(doc: &Html, model: &str) {
    use object::{Object, ObjectSection, SectionKind};
    let rows: Vec<ElementRef> = doc.select(&sel("#targets tr[data-target]")).collect();
    assert_eq!(rows.len(), 3);
    let dir = scratch();
    for row in rows {
        let t = row.value().attr("data-target").unwrap();
        let obj = dir.join(format!("{t}.o"));
        shrink(&["compile", model, "--target", t, "-o", obj.to_str().unwrap()]);
        let bytes = std::fs::read(&obj).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let (mut code, mut data) = (0u64, 0u64);
        for s in file.sections() {
            match s.kind() {
                SectionKind::Text => code += s.size(),
                SectionKind::ReadOnlyData | SectionKind::ReadOnlyString => data += s.size(),
                _ => {}
            }
        }
        let shown = |f: &str| text(one(row, &format!("td[data-field={f}]")));
        assert_eq!(shown("code_bytes"), code.to_string(), "{t} code");
        assert_eq!(shown("rodata_bytes"), data.to_string(), "{t} rodata");
        println!("{model}: {t}: {code} code bytes, {data} rodata bytes");
    }
}

/// Headless Chromium, installed with apt-get when missing and running as root.
fn chromium() -> &'static str {
    const BIN: &str = "chromium";
    let found = || {
        Command::new(BIN)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found() {
        return BIN;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "chromium is missing: install it with `sudo apt-get install -y chromium`"
    );
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-qq", BIN]) {
        apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", BIN]);
    }
    assert!(
        found(),
        "chromium is missing and apt-get install chromium failed"
    );
    BIN
}

/// Renders `html` at 1200 × `height` and returns the screenshot's RGB pixels.
fn screenshot(html: &Path, height: usize) -> Vec<[u8; 3]> {
    let png_path = html.with_extension("png");
    let profile = html.with_extension("chromium-profile");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", png_path.display()),
            &format!("--window-size=1200,{height}"),
            &format!("file://{}", html.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!(
                "chromium did not finish rendering {} in 180 s",
                html.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(&hex[1..], 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Renders the page and compares the pixels of each map colour with what the maps state they
/// draw: cells × cell area (plus the legend swatch), gutter pixels for the dead-line colour.
fn check_rendering(label: &str, doc: &Html, path: &Path) {
    let pixels = screenshot(path, 3000);
    let count = |hex: &str| pixels.iter().filter(|&&p| p == rgb(hex)).count();
    let swatch = attr(one(doc.root_element(), "svg.legend"), "data-swatch-px");
    let (mut want, mut dead) = ([swatch; 3], swatch);
    for map in doc.select(&sel("svg.signmap")) {
        let px = attr(map, "data-cell-px").pow(2);
        for (k, s) in ["neg", "zero", "pos"].iter().enumerate() {
            want[k] += attr(map, &format!("data-cells-{s}")) * px;
        }
        dead += attr(map, "data-dead-px");
    }
    let colours = [
        sign_map::NEG_COLOUR,
        sign_map::ZERO_COLOUR,
        sign_map::POS_COLOUR,
    ];
    let total_want: usize = want.iter().sum();
    for (k, name) in ["-1", "0", "+1"].iter().enumerate() {
        let got = count(colours[k]);
        println!(
            "{label}: sign {name} ({}): {got} pixels, maps state {} ({:.1}% of the sign pixels, \
             expected {:.1}%)",
            colours[k],
            want[k],
            100.0 * got as f64 / total_want as f64,
            100.0 * want[k] as f64 / total_want as f64
        );
        // Tolerance: 2% of the expected count, for edge pixels a renderer may blend.
        let tol = want[k] / 50 + 16;
        assert!(
            got.abs_diff(want[k]) <= tol,
            "{label}: sign {name}: {got} pixels, expected {} ± {tol}",
            want[k]
        );
    }
    let got = count(sign_map::DEAD_COLOUR);
    println!("{label}: dead-line colour: {got} pixels, maps state {dead}");
    assert!(got.abs_diff(dead) <= dead / 50 + 16, "{label}: dead pixels");
}

#[test]
fn shipped_models_pages_match_inspect_json_and_render() {
    let dir = scratch();
    for m in ["ternary_mlp", "ternary_cnn", "bitnet_block"] {
        let model = repo().join(format!("examples/models/{m}/model.onnx"));
        let model = model.to_str().unwrap();
        let out = dir.join(format!("{m}.html"));
        let html = build_html(model, &out);
        println!("{m}: {} bytes of HTML", html.len());
        let doc = parse(&html);
        let json = inspect_json(model);
        check_numbers(&doc, &json);
        // Same model, same options: the same bytes.
        let again = dir.join(format!("{m}-again.html"));
        assert_eq!(build_html(model, &again), html, "{m}: not deterministic");
        if m == "ternary_mlp" {
            check_targets(&doc, model);
            // The model removes rows and columns: its maps mark them.
            let dead: usize = doc
                .select(&sel("svg.signmap"))
                .map(|s| attr(s, "data-dead-px"))
                .sum();
            assert!(dead > 0);
            check_rendering(m, &doc, &out);
        }
    }
}

const EVIL: &str = "fc1<script>alert(1)</script>&\"'";

/// Deterministic trits with P(0) = 0.4, P(+1) = 0.35, P(−1) = 0.25.
fn trits(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match (s >> 33) % 20 {
                0..8 => 0.0,
                8..15 => 0.5,
                _ => -0.5,
            }
        })
        .collect()
}

/// x[1,600] → MatMul `EVIL` [600,300] → Add → Relu → MatMul fc2 [300,10] → Add → y, with input
/// features 7..=9 unread (zero columns), hidden unit 40 dead by its incoming weights (its bias
/// negative, so Relu makes it 0) and unit 100 dead by its outgoing weights.
fn planted_model() -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let (k, n, o) = (600, 300, 10);
    let mut w1 = trits(k * n, 1);
    let mut w2 = trits(n * o, 2);
    for f in 7..=9 {
        w1[f * n..(f + 1) * n].fill(0.0);
    }
    for i in 0..k {
        w1[i * n + 40] = 0.0;
    }
    w2[100 * o..101 * o].fill(0.0);
    let mut b1 = vec![0.1f32; n];
    b1[40] = -0.3;
    let mut m = ModelBuilder::new("planted", 17);
    m.input("x", DType::F32, &[WDim::Fixed(1), WDim::Fixed(k)])
        .output("y", DType::F32, &[WDim::Fixed(1), WDim::Fixed(o)])
        .initializer("w1", &Tensor::from_vec(vec![k, n], w1.clone()))
        .initializer("b1", &Tensor::from_vec(vec![n], b1))
        .initializer("w2", &Tensor::from_vec(vec![n, o], w2.clone()))
        .initializer("b2", &Tensor::from_vec(vec![o], vec![0.2f32; o]))
        .node("MatMul", EVIL, &["x", "w1"], &["m1"], &[])
        .node("Add", "bias1", &["m1", "b1"], &["s1"], &[])
        .node("Relu", "act1", &["s1"], &["h1"], &[])
        .node("MatMul", "fc2", &["h1", "w2"], &["m2"], &[])
        .node("Add", "bias2", &["m2", "b2"], &["y"], &[]);
    (m.to_bytes(), w1, w2)
}

/// The downsampled grid of a [k, n] MatMul weight (view: n outputs × k inputs) by plain loops:
/// blocks of ceil(side / 256), majority sign, ties to 0 then +1.
fn expected_grid(w: &[f32], k: usize, n: usize) -> Vec<i8> {
    let (br, bc) = (n.div_ceil(256), k.div_ceil(256));
    let (gr, gc) = (n.div_ceil(br), k.div_ceil(bc));
    let mut cells = vec![];
    for gy in 0..gr {
        for gx in 0..gc {
            let mut c = [0usize; 3];
            for r in gy * br..((gy + 1) * br).min(n) {
                for i in gx * bc..((gx + 1) * bc).min(k) {
                    let v = w[i * n + r];
                    c[if v == 0.0 {
                        1
                    } else if v > 0.0 {
                        2
                    } else {
                        0
                    }] += 1;
                }
            }
            let [neg, zero, pos] = c;
            cells.push(if zero >= neg && zero >= pos {
                0
            } else if pos >= neg {
                1
            } else {
                -1
            });
        }
    }
    cells
}

#[test]
fn planted_model_page_shows_its_downsampled_signs_removed_lines_and_escaped_names() {
    let dir = scratch();
    let (bytes, w1, w2) = planted_model();
    let model = dir.join("planted.onnx");
    std::fs::write(&model, bytes).unwrap();
    let model = model.to_str().unwrap();
    let out = dir.join("planted.html");
    let html = build_html(model, &out);
    println!("planted: {} bytes of HTML", html.len());
    assert!(html.contains("fc1&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
    assert!(!html.contains("<script"));
    let doc = parse(&html);
    let json = inspect_json(model);
    check_numbers(&doc, &json);
    let layers = json["layers"].as_array().unwrap();
    let index = |name: &str| layers.iter().position(|l| l["name"] == name).unwrap();
    let card = |name: &str| {
        one(
            doc.root_element(),
            &format!("article.layer[data-index=\"{}\"]", index(name)),
        )
    };
    // (layer, weight, k, n, removed rows, removed columns) as planted.
    for (name, w, k, n, rows, cols) in [
        (EVIL, &w1, 600, 300, "40, 100", "7–9"),
        ("fc2", &w2, 300, 10, "", "40, 100"),
    ] {
        let c = card(name);
        assert_eq!(text(one(c, "h3")), name);
        let map = one(c, "svg.signmap");
        let grid = expected_grid(w, k, n);
        let want = |s: i8| grid.iter().filter(|&&x| x == s).count();
        for (s, attr_name) in [(-1, "neg"), (0, "zero"), (1, "pos")] {
            assert_eq!(
                attr(map, &format!("data-cells-{attr_name}")),
                want(s),
                "{name}: {attr_name} cells"
            );
        }
        let shown = |css: &str| c.select(&sel(css)).next().map(text).unwrap_or_default();
        assert_eq!(shown("figcaption span.dead-rows"), rows, "{name} rows");
        assert_eq!(shown("figcaption span.dead-cols"), cols, "{name} cols");
    }
    // Gutter marks (one per run of marked cells, on both sides): fc1's removed rows 40 and 100
    // fall in 2-row cells 20 and 50, its columns 7..=9 in 3-column cells 2 and 3; fc2's columns
    // 40 and 100 in 2-column cells 20 and 50.
    let marks = |name: &str, class: &str| card(name).select(&sel(class)).count();
    assert_eq!(marks(EVIL, "rect.dead-rows"), 2 * 2);
    assert_eq!(marks(EVIL, "rect.dead-cols"), 2);
    assert_eq!(marks("fc2", "rect.dead-rows"), 0);
    assert_eq!(marks("fc2", "rect.dead-cols"), 2 * 2);
    check_rendering("planted", &doc, &out);
}

#[test]
fn downsampling_takes_the_majority_of_each_block_ties_to_zero_then_plus() {
    assert_eq!(sign_map::majority([1, 1, 1]), 0);
    assert_eq!(sign_map::majority([2, 1, 1]), -1);
    assert_eq!(sign_map::majority([1, 1, 2]), 1);
    assert_eq!(sign_map::majority([2, 0, 2]), 1);
    assert_eq!(sign_map::majority([3, 3, 0]), 0);
    assert_eq!(sign_map::block_len(256), 1);
    assert_eq!(sign_map::block_len(257), 2);
    assert_eq!(sign_map::block_len(4096), 16);
    // 5 × 600: rows stay, columns come in blocks of 3 (200 cells). Column block b of row r
    // holds the weights 3b..3b+3: pick signs so the block majority is known.
    let g = SignGrid::from_fn(5, 600, |r, c| match (r, c % 3) {
        (0, _) => 1, // all +1
        (1, 0) => 1, // +1, 0, -1: a three-way tie goes to 0
        (1, 1) => 0,
        (1, _) => -1,
        (2, 2) => 0, // -1, -1, 0: -1
        (2, _) => -1,
        (3, 0) => 0, // 0, +1, +1: +1
        (3, _) => 1,
        _ => 0,
    });
    assert_eq!(
        (g.grid_rows, g.grid_cols, g.block_rows, g.block_cols),
        (5, 200, 1, 3)
    );
    for (r, want) in [(0, 1), (1, 0), (2, -1), (3, 1), (4, 0)] {
        assert!(
            g.cells[r * 200..(r + 1) * 200].iter().all(|&s| s == want),
            "row {r}"
        );
    }
    // A 4096² layer of pseudo-random signs (the worst case for run-length paths) stays a
    // bounded map: 256² cells and well under 300 KB of SVG.
    let mut s = 7u64;
    let big = SignGrid::from_fn(4096, 4096, |_, _| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((s >> 40) % 3) as i8 - 1
    });
    assert_eq!((big.grid_rows, big.grid_cols), (256, 256));
    let svg = sign_map::svg(&big, None, "big");
    println!("4096x4096 random signs: {} bytes of SVG", svg.len());
    assert!(svg.len() < 300_000, "{} bytes", svg.len());
}

#[test]
fn model_strings_are_escaped() {
    assert_eq!(
        shrink::report::escape("<script>&\"'x"),
        "&lt;script&gt;&amp;&quot;&#39;x"
    );
    assert_eq!(shrink::report::escape("plain_name.1"), "plain_name.1");
}

/// A model whose code cannot be generated (an unbound batch dim) still gets its page: each
/// target row and the model section show the one-line reason, as `inspect --json` states it.
#[test]
fn a_target_that_fails_shows_its_error_on_the_page() {
    let dir = scratch();
    let mut m = ModelBuilder::new("dynamic", 17);
    m.input("x", DType::F32, &[WDim::Sym("N".into()), WDim::Fixed(4)])
        .output("y", DType::F32, &[WDim::Sym("N".into()), WDim::Fixed(3)])
        .initializer("w", &Tensor::from_vec(vec![4, 3], trits(12, 3)))
        .node("MatMul", "fc", &["x", "w"], &["y"], &[]);
    let model = dir.join("dynamic.onnx");
    std::fs::write(&model, m.to_bytes()).unwrap();
    let model = model.to_str().unwrap();
    let html = build_html(model, &dir.join("dynamic.html"));
    let doc = parse(&html);
    let json = inspect_json(model);
    check_numbers(&doc, &json);
    let why = json["codegen_error"].as_str().expect("codegen fails");
    let root = doc.root_element();
    assert_eq!(
        text(one(root, "#model [data-field=codegen_error]")),
        format!("no code generated: {why}")
    );
    let errors: Vec<String> = doc
        .select(&sel("#targets tr[data-target] td[data-field=error]"))
        .map(text)
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    for e in &errors {
        println!("dynamic: target error: {e}");
        assert!(!e.is_empty() && !e.contains('\n'));
        assert!(e.contains("N"), "{e}");
    }
}

/// A surviving line with no nonzero carries no number: it goes to the first all-zero original
/// line between its numbered neighbours, else the first free one; numbers out of order fail.
#[test]
fn unnumbered_surviving_lines_take_the_first_all_zero_free_lines() {
    use shrink::report::dead::place_unnumbered;
    let zero = [false, false, true, false, false];
    assert_eq!(
        place_unnumbered(&[Some(0), None, Some(4)], &zero),
        Ok(vec![0, 2, 4])
    );
    assert_eq!(
        place_unnumbered(&[Some(0), None, Some(4)], &[false; 5]),
        Ok(vec![0, 1, 4])
    );
    assert_eq!(
        place_unnumbered(&[None, None, Some(3)], &zero),
        Ok(vec![0, 2, 3])
    );
    assert!(place_unnumbered(&[Some(3), Some(1)], &zero).is_err());
    assert!(place_unnumbered(&[Some(0), None, Some(1)], &zero).is_err());
}
