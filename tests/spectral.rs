//! Spectral bounds: power iteration against exact SVDs of explicit matrices, the Fourier formula
//! against circular convolutions and above the zero-padded norms, and the Table 5 bookkeeping.

use blindspot::rng::Rng;
use blindspot::spectral::{self, fourier_norm, fourier_norm_on_grid, ConvKernel, LayerOperator};
use blindspot::Classifier;
use nalgebra::DMatrix;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::DataFormat;

#[path = "support/models.rs"]
mod support_models;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn largest_singular_value(rows: usize, cols: usize, entries: &[f64]) -> f64 {
    let m = DMatrix::from_row_slice(rows, cols, entries);
    m.singular_values().iter().copied().fold(0.0, f64::max)
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// x [1, n] -> x W, W [n, m] a constant; the EinSum tract makes of ONNX MatMul.
fn dense(n: usize, m: usize, w: &[f32], constant_first: bool) -> TractResult<(TypedModel, usize)> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, n]))?;
    let k = model.add_const("w", tract_ndarray::Array2::from_shape_vec((n, m), w.to_vec())?.into_tensor())?;
    let (expr, inputs) = if constant_first { ("kn,ak->an", [k, x]) } else { ("ak,kn->an", [x, k]) };
    let y = model.wire_node("dense", EinSum::new(expr.parse()?, f32::datum_type()), &inputs)?[0];
    model.select_output_outlets(&[y])?;
    let id = y.node;
    Ok((model, id))
}

#[test]
fn power_iteration_matches_the_svd_of_dense_layers() -> TractResult<()> {
    let mut rng = Rng(7);
    for (n, m, constant_first) in [(5, 3, false), (30, 17, true), (64, 100, false), (1, 4, false)] {
        let w = rng.vec(n * m);
        let (model, id) = dense(n, m, &w, constant_first)?;
        let op = LayerOperator::new(&model, id).map_err(|e| anyhow!("{e}"))?;
        let power = op.norm(1).map_err(|e| anyhow!("{e}"))?;
        let exact = largest_singular_value(n, m, &w.iter().map(|&v| v as f64).collect::<Vec<_>>());
        assert!(power.converged, "{n}x{m}: {power:?}");
        assert!(relative(power.norm, exact) <= 1e-4, "{n}x{m}: power {} against SVD {exact}", power.norm);
    }
    Ok(())
}

/// One 2-D convolution: geometry, and its explicit matrix (rows: outputs, columns: inputs, both
/// NCHW with batch 1) written from the definition, independently of tract.
struct ConvCase {
    ci: usize,
    co: usize,
    hw: [usize; 2],
    k: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    /// (before, after) per axis
    pads: [(usize, usize); 2],
    group: usize,
}

impl ConvCase {
    fn out_hw(&self) -> [usize; 2] {
        [0, 1].map(|a| {
            let padded = self.hw[a] + self.pads[a].0 + self.pads[a].1;
            (padded - (self.k[a] - 1) * self.dilations[a] - 1) / self.strides[a] + 1
        })
    }

    fn matrix(&self, w: &[f32]) -> (usize, usize, Vec<f64>) {
        let [oh, ow] = self.out_hw();
        let [h, wd] = self.hw;
        let (cig, cog) = (self.ci / self.group, self.co / self.group);
        let (rows, cols) = (self.co * oh * ow, self.ci * h * wd);
        let mut a = vec![0.0; rows * cols];
        for o in 0..self.co {
            let g = o / cog;
            for (y, x) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                for i in 0..cig {
                    for (r, c) in (0..self.k[0]).flat_map(|r| (0..self.k[1]).map(move |c| (r, c))) {
                        let iy = (y * self.strides[0] + r * self.dilations[0]) as isize - self.pads[0].0 as isize;
                        let ix = (x * self.strides[1] + c * self.dilations[1]) as isize - self.pads[1].0 as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                            continue;
                        }
                        let channel = g * cig + i;
                        let row = (o * oh + y) * ow + x;
                        let col = (channel * h + iy as usize) * wd + ix as usize;
                        a[row * cols + col] += w[((o * cig + i) * self.k[0] + r) * self.k[1] + c] as f64;
                    }
                }
            }
        }
        (rows, cols, a)
    }

    fn model(&self, w: &[f32], bias: &[f32], padding: PaddingSpec) -> TractResult<(TypedModel, usize)> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, self.ci, self.hw[0], self.hw[1]]))?;
        let kshape = [self.co, self.ci / self.group, self.k[0], self.k[1]];
        let k = model.add_const("kernel", tract_ndarray::ArrayD::from_shape_vec(kshape.to_vec(), w.to_vec())?.into_tensor())?;
        let b = model.add_const("bias", tract_ndarray::Array1::from_vec(bias.to_vec()).into_tensor())?;
        let spec = PoolSpec::new(
            DataFormat::NCHW,
            self.k.iter().copied().collect(),
            padding,
            Some(self.dilations.iter().copied().collect()),
            Some(self.strides.iter().copied().collect()),
            self.ci,
            self.co,
        );
        let conv = Conv { pool_spec: spec, kernel_fmt: KernelFormat::OIHW, group: self.group, q_params: None };
        let y = model.wire_node("conv", conv, &[x, k, b])?[0];
        model.select_output_outlets(&[y])?;
        Ok((model, y.node))
    }
}

fn explicit(pads: [(usize, usize); 2]) -> PaddingSpec {
    PaddingSpec::Explicit(tvec!(pads[0].0, pads[1].0), tvec!(pads[0].1, pads[1].1))
}

#[test]
fn power_iteration_matches_the_svd_of_convolutions() -> TractResult<()> {
    let plain = ConvCase { ci: 2, co: 3, hw: [6, 5], k: [3, 3], strides: [1, 1], dilations: [1, 1], pads: [(1, 1), (1, 1)], group: 1 };
    let cases = [
        ("pad 1", ConvCase { ..plain }, None),
        ("valid", ConvCase { pads: [(0, 0), (0, 0)], ..plain }, Some(PaddingSpec::Valid)),
        // SAME_UPPER on 6x5 with a 3x3 kernel, stride 2: outputs 3x3, padding (0,1) and (1,1)
        ("same upper, stride 2", ConvCase { strides: [2, 2], pads: [(0, 1), (1, 1)], ..plain }, Some(PaddingSpec::SameUpper)),
        ("asymmetric, strides 2x3", ConvCase { hw: [7, 8], strides: [2, 3], pads: [(1, 0), (2, 1)], ..plain }, None),
        ("dilation 2", ConvCase { hw: [9, 8], dilations: [2, 2], pads: [(2, 2), (2, 2)], ..plain }, None),
        ("2 groups", ConvCase { ci: 4, co: 6, group: 2, ..plain }, None),
        ("depthwise, 2x1 kernel", ConvCase { ci: 3, co: 3, group: 3, k: [2, 1], pads: [(0, 1), (0, 0)], ..plain }, None),
    ];
    let mut rng = Rng(11);
    for (what, case, padding) in cases {
        let w = rng.vec(case.co * case.ci / case.group * case.k[0] * case.k[1]);
        let bias = rng.vec(case.co);
        let (model, id) = case.model(&w, &bias, padding.unwrap_or_else(|| explicit(case.pads)))?;
        let (rows, cols, a) = case.matrix(&w);
        let op = LayerOperator::new(&model, id).map_err(|e| anyhow!("{e}"))?;
        assert_eq!((op.output_len(), op.input_len()), (rows, cols), "{what}: shapes");
        // the explicit matrix is tract's convolution (bias left out), and A^T is its transpose
        let x: Vec<f64> = rng.vec(cols).into_iter().map(f64::from).collect();
        let y: Vec<f64> = rng.vec(rows).into_iter().map(f64::from).collect();
        let ax = op.apply(&x).map_err(|e| anyhow!("{e}"))?;
        let aty = op.adjoint(&y).map_err(|e| anyhow!("{e}"))?;
        for r in 0..rows {
            let expected: f64 = (0..cols).map(|c| a[r * cols + c] * x[c]).sum();
            assert!((ax[r] - expected).abs() <= 1e-9, "{what}: (A x)[{r}] = {} against {expected}", ax[r]);
        }
        for c in 0..cols {
            let expected: f64 = (0..rows).map(|r| a[r * cols + c] * y[r]).sum();
            assert!((aty[c] - expected).abs() <= 1e-9, "{what}: (A^T y)[{c}] = {} against {expected}", aty[c]);
        }
        let power = op.norm(3).map_err(|e| anyhow!("{e}"))?;
        let exact = largest_singular_value(rows, cols, &a);
        assert!(power.converged && power.iterations < spectral::CAP, "{what}: {power:?}");
        assert!(relative(power.norm, exact) <= 1e-4, "{what}: power {} against SVD {exact}", power.norm);
        // the Fourier formula (stride 1, continuous frequencies) bounds every one of them
        let layer = spectral::linear_layer(&model, id).unwrap();
        let spectral::Kind::Conv { kernel: Some(kernel), .. } = &layer.kind else { panic!("{what}: not a conv") };
        assert!(fourier_norm(kernel) >= exact * (1.0 - 1e-9), "{what}: Fourier {} below {exact}", fourier_norm(kernel));
    }
    Ok(())
}

/// The exact norm of a circular convolution on an n0 x n1 torus is the sup of ||A(xi)|| over the
/// n0 x n1 DFT grid.
#[test]
fn fourier_formula_is_exact_for_circular_convolutions() {
    let mut rng = Rng(5);
    for (ci, co, group, k, dil, torus) in [
        (1, 1, 1, [3, 3], [1, 1], [8, 8]),
        (3, 4, 1, [3, 3], [1, 1], [6, 7]),
        (4, 6, 2, [3, 2], [2, 1], [9, 8]),
        (2, 5, 1, [1, 1], [1, 1], [4, 4]),
    ] {
        let cig = ci / group;
        let cog = co / group;
        let w = rng.vec(co * cig * k[0] * k[1]);
        let (rows, cols) = (co * torus[0] * torus[1], ci * torus[0] * torus[1]);
        let mut a = vec![0.0; rows * cols];
        for o in 0..co {
            for (y, x) in (0..torus[0]).flat_map(|y| (0..torus[1]).map(move |x| (y, x))) {
                for i in 0..cig {
                    for (r, c) in (0..k[0]).flat_map(|r| (0..k[1]).map(move |c| (r, c))) {
                        let iy = (y + r * dil[0]) % torus[0];
                        let ix = (x + c * dil[1]) % torus[1];
                        let channel = o / cog * cig + i;
                        a[((o * torus[0] + y) * torus[1] + x) * cols + (channel * torus[0] + iy) * torus[1] + ix] +=
                            w[((o * cig + i) * k[0] + r) * k[1] + c] as f64;
                    }
                }
            }
        }
        let kernel = ConvKernel::new(w.iter().map(|&v| v as f64).collect(), [co, cig, k[0], k[1]], group, dil);
        let exact = largest_singular_value(rows, cols, &a);
        let fourier = fourier_norm_on_grid(&kernel, torus);
        assert!(relative(fourier, exact) <= 1e-4, "{ci}->{co} /{group} on {torus:?}: Fourier {fourier} against SVD {exact}");
        assert!(fourier_norm(&kernel) >= fourier * (1.0 - 1e-12));
    }
}

fn shipped(id: &str) -> Classifier {
    Classifier::load(&std::fs::read(format!("{ROOT}/models/{id}.onnx")).unwrap(), None).unwrap()
}

#[test]
fn the_cnn_table() {
    let table = spectral::lipschitz(&shipped("cnn")).unwrap();
    let convs: Vec<&spectral::Row> = table.rows.iter().filter(|r| r.op == "Conv").collect();
    assert_eq!(convs.len(), 2);
    for r in &convs {
        // zero padding: the sup over continuous frequencies bounds the norm from above, closely
        let (power, fourier) = (r.power.unwrap(), r.fourier.unwrap());
        assert!(fourier >= power * (1.0 - 1e-9) && fourier <= power * 1.05, "{}: Fourier {fourier}, power {power}", r.node);
    }
    let names: Vec<&str> = table.rows.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(names, ["sub_mean", "conv1", "conv2", "fc1.ab", "fc2.ab"]);
    // the in-graph normalisation divides by 0.3081
    assert!(relative(table.rows[0].factor, 1.0 / 0.3081) <= 1e-6, "{:?}", table.rows[0]);
    check_product(&table);
}

#[test]
fn the_sigmoid_mlp_table() {
    let table = spectral::lipschitz(&shipped("fc200-200-10")).unwrap();
    assert_eq!(table.rows.len(), 3);
    for r in &table.rows[..2] {
        assert_eq!(r.factor, 0.25, "{r:?}");
        assert!(relative(r.bound, r.power.unwrap() * 0.25) <= 1e-12);
    }
    check_product(&table);
}

fn check_product(table: &spectral::Table) {
    let product: f64 = table.rows.iter().map(|r| r.bound).product();
    assert!(relative(table.product.unwrap(), product) <= 1e-12);
    // the Markdown's product is the product of its rows, to its printed digits
    let markdown = table.markdown();
    let cells = |line: &str| line.split('|').map(|c| c.trim().trim_matches('*').to_string()).collect::<Vec<_>>();
    let lines: Vec<&str> = markdown.lines().filter(|l| l.starts_with('|')).skip(2).collect();
    let rows: f64 = lines[..lines.len() - 1].iter().map(|l| cells(l)[9].parse::<f64>().unwrap()).product();
    let printed: f64 = cells(lines[lines.len() - 1])[9].parse().unwrap();
    assert!(relative(printed, rows) <= 1e-5, "{markdown}");
}

#[test]
fn a_residual_graph_gets_norms_but_no_product() -> TractResult<()> {
    let mut rng = Rng(2);
    let (mut model, id) = dense(6, 6, &rng.vec(36), false)?;
    let x = model.input_outlets()?[0];
    let y = model.wire_node("residual", math::add(), &[x, OutletId::new(id, 0)])?[0];
    model.select_output_outlets(&[y])?;
    let table = spectral::lipschitz_graph(&model, |_, _, _| {}).map_err(|e| anyhow!("{e}"))?;
    assert_eq!(table.rows.len(), 1);
    assert!(table.rows[0].power.unwrap() > 0.0);
    assert_eq!(table.product, None);
    let why = table.unavailable.clone().unwrap();
    assert!(why.contains("\"residual\"") && why.contains("not a chain"), "{why}");
    assert!(table.markdown().contains("No product bound: node \"residual\""), "{}", table.markdown());

    // an op with no known factor is named, with its node
    let (mut model, id) = dense(4, 3, &rng.vec(12), false)?;
    let y = model.wire_node("growth", math::exp(), &[OutletId::new(id, 0)])?[0];
    model.select_output_outlets(&[y])?;
    let table = spectral::lipschitz_graph(&model, |_, _, _| {}).map_err(|e| anyhow!("{e}"))?;
    assert_eq!(table.product, None);
    let why = table.unavailable.unwrap();
    assert!(why.contains("Exp") && why.contains("\"growth\""), "{why}");
    Ok(())
}

/// The exact norm of a convolution of `graph` (node `name`), from the SVDs of its explicit
/// matrices, one per group (a grouped convolution is block-diagonal across groups).
fn exact_conv_norm(graph: &TypedModel, name: &str) -> f64 {
    let id = graph.node_by_name(name).unwrap().id;
    let layer = spectral::linear_layer(graph, id).unwrap();
    let spectral::Kind::Conv { kernel: Some(kernel), padding, strides, group, .. } = &layer.kind else { panic!("{name}: not a 2-D conv") };
    let n = layer.input_shape.len();
    let [co, cig, kh, kw] = kernel.shape;
    let case = ConvCase {
        ci: cig,
        co: co / group,
        hw: [layer.input_shape[n - 2], layer.input_shape[n - 1]],
        k: [kh, kw],
        strides: [strides[0], strides[1]],
        dilations: kernel.dilations,
        pads: [padding[0], padding[1]],
        group: 1,
    };
    let per_group = co / group * cig * kh * kw;
    (0..*group)
        .map(|g| {
            let w: Vec<f32> = kernel.weights[g * per_group..][..per_group].iter().map(|&v| v as f32).collect();
            let (rows, cols, a) = case.matrix(&w);
            largest_singular_value(rows, cols, &a)
        })
        .fold(0.0, f64::max)
}

/// Every linear layer's row of Table 5: a positive norm by power iteration that converged before the
/// cap, or (the layers named in `capped`, whose top singular values nearly coincide) reached the cap
/// within 1e-4 below the exact norm; for convolutions the Fourier value at or above it, and close:
/// within 10% at stride 1 on images of 8 pixels a side or more (the gap is the border), within a
/// factor 2 on smaller images and for strided convolutions (the stride-1 bound).
fn check_rows(model: &str, graph: &TypedModel, table: &spectral::Table, layers: usize, capped: &[&str]) {
    let measured: Vec<&spectral::Row> = table.rows.iter().filter(|r| r.power.is_some()).collect();
    assert_eq!(measured.len(), layers, "{model}: {:?}", table.rows.iter().map(|r| &r.node).collect::<Vec<_>>());
    for r in &measured {
        let (power, iterations) = (r.power.unwrap(), r.iterations.unwrap());
        assert!(power > 0.0 && power.is_finite(), "{model} {}: power {power}", r.node);
        if capped.contains(&r.node.as_str()) {
            assert_eq!(iterations, spectral::CAP, "{model} {}: expected at the cap", r.node);
            let exact = exact_conv_norm(graph, &r.node);
            assert!(power <= exact * (1.0 + 1e-12) && relative(power, exact) <= 1e-4, "{model} {}: power {power} against SVD {exact}", r.node);
        } else {
            assert!(iterations < spectral::CAP, "{model} {}: power iteration stopped at the cap ({power})", r.node);
        }
        match (r.op.as_str(), r.fourier) {
            ("Conv", Some(fourier)) => {
                assert!(fourier >= power * (1.0 - 1e-4), "{model} {}: Fourier {fourier} below power {power}", r.node);
                let input = spectral::linear_layer(graph, graph.node_by_name(&r.node).unwrap().id).unwrap().input_shape;
                let spatial = input[input.len() - 2].min(input[input.len() - 1]);
                let within = if !r.strided && spatial >= 8 { 1.1 } else { 2.0 };
                assert!(fourier <= power * within, "{model} {}: Fourier {fourier} above {within} x power {power}", r.node);
            }
            ("Conv", None) => panic!("{model} {}: a 2-D convolution without its Fourier value", r.node),
            (_, fourier) => assert_eq!(fourier, None, "{model} {}", r.node),
        }
    }
}

#[test]
fn every_shipped_model_gets_a_full_table_and_its_product() {
    let layers = |id: &str| match id {
        "cnn" => 4,
        "fc10-1e-4" | "fc10-1e-2" | "fc10-1" => 1,
        "ae400-10" => 2,
        _ => 3,
    };
    let models = support_models::shipped();
    assert_eq!(models.len(), 11);
    for (id, model) in &models {
        let table = spectral::lipschitz(model).unwrap();
        check_rows(id, model.graph(), &table, layers(id), &[]);
        // a chain: the product of the rows' bounds, nothing unavailable
        assert_eq!(table.unavailable, None, "{id}");
        assert!(table.product.unwrap() > 0.0, "{id}");
        check_product(&table);
    }
}

/// A residual graph: every layer measured, no product, the first node joining two branches named;
/// the global average pool is a sum of n (√n) then a scale 1/n, so its row's factor has 1/√n.
fn check_residual_zoo(zoo: &str, layers: usize, capped: &[&str], join: &str, pooled: usize) {
    let model = Classifier::load(&std::fs::read(format!("{ROOT}/tests/fixtures/zoo/{zoo}.onnx")).unwrap(), None).unwrap();
    let table = spectral::lipschitz(&model).unwrap();
    check_rows(zoo, model.graph(), &table, layers, capped);
    assert_eq!(table.product, None);
    let why = table.unavailable.clone().unwrap();
    assert!(why.starts_with(&format!("node \"{join}\" (Add) combines 2 branches")), "{zoo}: {why}");
    assert!(table.markdown().contains(&format!("No product bound: node \"{join}\"")), "{zoo}");
    let pool: Vec<&spectral::Row> = table.rows.iter().filter(|r| r.then.iter().any(|(what, _)| what.starts_with("sum of"))).collect();
    assert_eq!(pool.len(), 1, "{zoo}");
    let then = &pool[0].then;
    let at = then.iter().position(|(what, _)| *what == format!("sum of {pooled}")).unwrap();
    assert!(relative(then[at].1, (pooled as f64).sqrt()) <= 1e-12, "{zoo}: {then:?}");
    assert_eq!(then[at + 1].0, "scale", "{zoo}: {then:?}");
    assert!(relative(then[at + 1].1, 1.0 / pooled as f64) <= 1e-6, "{zoo}: {then:?}");
    let product: f64 = then.iter().map(|(_, f)| f).product();
    assert!(relative(pool[0].factor, product) <= 1e-12 && relative(pool[0].bound, pool[0].power.unwrap() * product) <= 1e-12, "{zoo}: {:?}", pool[0]);
}

#[test]
fn mobilenet_gets_every_layer_including_depthwise_but_no_product() {
    // 28 convolutions (stride-1 3x3 depthwise ones among them; 1x1 ones are MatMul in tract) and the classifier
    let capped = ["/features/features.3/conv/conv.1/conv.1.0/Conv", "/features/features.5/conv/conv.1/conv.1.0/Conv"];
    check_residual_zoo("mobilenet", 29, &capped, "/features/features.3/Add", 16);
}

#[test]
fn resnet_gets_every_layer_but_no_product() {
    // 20 convolutions (the 1x1 downsamples are MatMul in tract) and the classifier
    check_residual_zoo("resnet", 21, &["/layer2/layer2.1/conv2/Conv"], "/layer1/layer1.0/Add", 4);
}
