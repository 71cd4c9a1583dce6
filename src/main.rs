//! The native CLI over the same core the page runs: classify, grad.

use std::process::ExitCode;

use blindspot::{Classifier, Error, Result};
use blindspot::lab::{Lab, Quiet, Request, Response};

const USAGE: &str = "\
blindspot: adversarial examples and the intriguing properties of neural networks

USAGE:
    blindspot classify MODEL IMAGE... [--shape 1,1,28,28] [PREPROCESSING]
    blindspot grad MODEL INPUT.npy --target K [--objective ce|margin] [--out GRAD.npy] [PREPROCESSING]
    blindspot attack MODEL INPUT.npy --target K|any [--method lbfgs|fgsm|pgd] [--out ADV.npy]
                     [--max-iterations 150] [--c-steps 5] [--epsilon E] [--step S] [--steps N]
                     [--norm linf|l2] [PREPROCESSING]
    blindspot table1 [--n 1000] [--seed 2013] [--models id|FILE.onnx,...] [--csv FILE]
    blindspot table2 [--n 1000] [--seed 2013]
    blindspot table3 [--n 1000] [--seed 2013]
    blindspot units MODEL [--tensor NAME [--unit I] [--seed S] [--top 8] [--n 10000]]
    blindspot serve-loss MODEL
    blindspot lipschitz MODEL
    blindspot bench grad [--ms 1000]
    blindspot train MODEL --out TRAINED.onnx [--epochs 1] [--batch 32] [--lr 0.01] [--optimizer sgd|adam]
                    [--weight-decay 0] [--adversarial none|fgsm|lbfgs|layers] [--epsilon 0.1] [--pool 1000]
                    [--refresh 0.1] [--pool-weight 0.5] [--n 60000] [--seed 2013] [--schedule constant|cosine]

    MODEL   an ONNX classifier (models/*.onnx)
    IMAGE   a .png (averaged to grey for 1-channel models, RGB for 3-channel ones) or a .npy of float32
            pixels in [0,1] holding one model input
    --shape the input shape, batch first (default: the shape the file declares; a symbolic batch is 1)

PREPROCESSING (classify, grad, attack; the page's input panel sets the same): wired into the graph
in front of the model's input, so INPUT.npy, IMAGE, the gradient and the attack are [0,1] pixel
planes [N, C, H, W] in R, G, B order whatever the model takes (--shape is then that shape too):
    --layout nchw|nhwc         where the model wants its channel axis
    --channels grey|rgb|bgr    the model's channel order
    --range 0-1|0-255|-1-1|imagenet   the values the model wants (imagenet: [0,1], then
                               torchvision's mean and std)
    --mean A,B,C --std A,B,C   subtracted, then divided by, after the range (R, G, B order)
Without any of them the model's input is used exactly as the file declares it; with any of them
the rest start from what the file suggests (NHWC for a last axis of 1 or 3, grey for one channel,
Windows ML's Image.BitmapPixelFormat and Image.NominalPixelRange metadata).

classify prints one JSON line per image: {\"image\",\"label\",\"probabilities\",\"logits\"}.

grad evaluates the objective at INPUT.npy (float32, exactly the model's input tensor) and its
gradient with respect to the input: ce = cross-entropy of softmax(logits) against class K,
margin = logit K minus the best other logit. It writes the gradient as a float32 .npy of the
input's shape (--out, default grad.npy) and prints one JSON line:
{\"objective\",\"value\",\"target\",\"logits\",\"out\"}.

attack makes an adversarial example of INPUT.npy: --target K aims at class K, --target any at
any class but the model's own answer for INPUT. lbfgs (default) is the paper's box-constrained
L-BFGS with the search over c (--max-iterations per c, --c-steps bisection steps); fgsm takes one
step of --epsilon (L-infinity, default 0.1); pgd takes up to --steps (default 100) steps of --step
(default epsilon/10) inside the --norm ball of radius --epsilon (defaults: linf, 0.1; l2, 2.0).
It writes the example as a float32 .npy (--out, default adv.npy) and prints one JSON line:
{\"method\",\"target\",\"success\",\"label\",\"probabilities\",\"distortion\",\"l2\",\"linf\",
\"iterations\",\"gradient_evaluations\",\"seconds\",\"c\",\"out\"}.

train trains MODEL's weights (its Conv, Gemm, MatMul, Add and Mul initializers; a BatchNorm's
scale and bias stay fixed) on the first --n MNIST training digits (models/data/mnist-train-60k.bin.gz)
with minibatch SGD (momentum 0.9) or Adam and an L2 weight decay, in a shuffled order from --seed
(--schedule cosine lowers the learning rate along a cosine to 1% of --lr over the run);
--adversarial fgsm trains on the mean of the loss at each digit and at its FGSM example of size
--epsilon (Goodfellow et al., 2014); --adversarial lbfgs is the paper's (section 4.2): each step
also trains on a batch drawn from a pool of --pool L-BFGS adversarial examples of training digits
(each towards a random other class, kept with its true label), filled at the start (topped up where
attacks failed) and a --refresh
fraction of it replaced by new examples, made with the weights of the moment, every 100 steps; the
pool's batch has the share --pool-weight of each step's loss, the digits the rest. It
writes the original graph with the trained weights to --out and prints one JSON line per epoch:
{\"epoch\",\"loss\",\"train_error\",\"test_error\",\"pool\",\"seconds\"} (errors over the --n
training digits and all 10,000 test digits; pool: the examples it holds). --adversarial layers adds
the paper's per-layer pools: for each hidden Sigmoid layer, a pool of --pool L-BFGS examples of its
outputs (the layers above it misclassify them) trains those layers, refreshed alike; the pools
share --pool-weight of the loss.

table1 reproduces the paper's Table 1 for the MNIST models of models/models.json: train and test
error from the model cards, and the average distortion of the L-BFGS attack over the first --n
test digits, each towards a seeded random other class; Markdown, the paper's figures beside ours.
--csv FILE also writes one line per attack: model,digit,label,target,success,distortion.
--models takes ids of models/models.json or paths of .onnx files (a model from blindspot train:
its card columns are blank).

table2 is the paper's Table 2: adversarial examples made (as in table1) for each Table 1 model,
and Gaussian noise of stddev 0.1 and 0.3, fed to every Table 1 model; each cell the error rate.
table3 is Tables 3-4: examples made for FC100-100-10 trained on P1, fed to FC123-456-10 (P1) and
FC100-100-10' (P2), plain and amplified to distortion 0.1, beside Gaussian noise of stddev 0.1.

units is the paper's Property 1. Without --tensor it lists the graph's named tensors, one JSON
line each: {\"name\",\"shape\"}. With --tensor it computes that tensor's activations phi(x) for
the first --n MNIST test digits and prints one JSON line: the --top digits maximising
<phi(x), e_I> for unit --unit (default 0), and those maximising <phi(x), v> for a random unit
direction v drawn with seed --seed (default 1), each as {\"digit\",\"label\",\"value\"}:
{\"tensor\",\"shape\",\"digits\",\"unit\",\"unit_top\",\"seed\",\"direction_top\"}.

lipschitz is the paper's Table 5 (section 4.3) for MODEL: for every linear layer (Gemm/MatMul,
Conv) its operator norm ||W|| by power iteration on the layer and its adjoint (in f64), and for
convolutions by the Fourier formula (sup over frequencies of the kernels' DFT matrix; the
stride-1 value for strided ones, an upper bound); the factor of what follows (ReLU 1, sigmoid 1/4,
max-pool 1, scalings); each row's upper Lipschitz bound and their product, a Lipschitz constant
of input -> logits. Markdown. A graph that is not a chain, or an op with no known factor, gets
the per-layer norms and no product, with the node named.

serve-loss is for reference checks (tools/reference_attack.py): it reads frames from stdin, each a
little-endian u32 target then the input as float32, and answers each with the attack's loss
(cross-entropy against the target) as a float64, then its gradient and the logits as float32.

bench grad prints a Markdown table: forward-only and forward + gradient evaluations per second
for every model in models/models.json and the MobileNet- and ResNet-class test graphs, each
timed for --ms milliseconds (run from the repository root), then the forward + gradient rate on
the WebGPU backend (wgpu's first native adapter, named below the table) and its ratio to the
CPU's; \"-\" where there is no adapter or the backend has no kernel for an op (both said below).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blindspot: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) if c != "-h" && c != "--help" => (c.as_str(), rest),
        _ => {
            println!("{USAGE}");
            return Ok(());
        }
    };
    let cli = Args::parse(rest)?;
    match command {
        "classify" => classify(&cli),
        "grad" => grad(&cli),
        "bench" => bench(&cli),
        "attack" => attack(&cli),
        "table1" => table1(&cli),
        "serve-loss" => serve_loss(&cli),
        "table2" => table2(&cli),
        "table3" => table3(&cli),
        "lipschitz" => lipschitz(&cli),
        "units" => units(&cli),
        "train" => train(&cli),
        other => Err(Error::Input(format!("unknown command \"{other}\"\n\n{USAGE}"))),
    }
}

/// Positional arguments and `--flag value` options, in any order.
struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args> {
        let mut positional = vec![];
        let mut options = vec![];
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let value = it
                    .next()
                    .ok_or_else(|| Error::Input(format!("--{name} needs a value")))?;
                options.push((name.to_string(), value.clone()));
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Args { positional, options })
    }

    fn option(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn refuse_unknown(&self, known: &[&str]) -> Result<()> {
        match self.options.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            Some((n, _)) => {
                let valid: Vec<String> = known.iter().map(|k| format!("--{k}")).collect();
                let valid = if valid.is_empty() { "none".to_string() } else { valid.join(", ") };
                Err(Error::Input(format!("unknown option --{n} (this command takes: {valid}; `blindspot --help` lists them all)")))
            }
            None => Ok(()),
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        // the shipped models and digits are read relative to the repository
        let hint = if path.starts_with("models/") && e.kind() == std::io::ErrorKind::NotFound {
            " (run blindspot from the repository's root, where models/ is)"
        } else {
            ""
        };
        Error::Data(format!("{path}: {e}{hint}"))
    })
}

/// The model file at `path` as the file declares it; a refusal names the file.
fn load_file(path: &str, shape: Option<&[usize]>) -> Result<Classifier> {
    Classifier::load(&read(path)?, shape).map_err(|e| e.in_file(path))
}

const PREPROCESSING: [&str; 5] = ["layout", "channels", "range", "mean", "std"];

/// The model as the flags declare its preprocessing; exactly the file's input without them.
fn load_model(args: &Args, path: &str, shape: Option<&[usize]>) -> Result<Classifier> {
    let bytes = read(path)?;
    load_declared(args, &bytes, shape).map_err(|e| e.in_file(path))
}

fn load_declared(args: &Args, bytes: &[u8], shape: Option<&[usize]>) -> Result<Classifier> {
    let given: Vec<(&str, &str)> =
        PREPROCESSING.iter().filter_map(|k| args.option(k).map(|v| (*k, v))).collect();
    if given.is_empty() {
        return Classifier::load(bytes, shape);
    }
    // the file's own suggestion (layout from the shape, Windows ML metadata), then the flags
    let mut pre = blindspot::preprocess::Preprocessing::suggested(&blindspot::model::decode(bytes)?)?;
    for (key, value) in given {
        pre.set(key, value)?;
    }
    Classifier::load_with(bytes, shape, &pre)
}

fn known<'a>(own: &[&'a str]) -> Vec<&'a str> {
    own.iter().copied().chain(PREPROCESSING).collect()
}

fn parse_shape(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Input(format!("--shape \"{s}\" is not a list like 1,1,28,28")))
}

fn classify(args: &Args) -> Result<()> {
    args.refuse_unknown(&known(&["shape"]))?;
    let (model_path, images) = match args.positional.split_first() {
        Some((m, images)) if !images.is_empty() => (m, images),
        _ => return Err(Error::Input(format!("classify needs MODEL and IMAGE\n\n{USAGE}"))),
    };
    let shape = args.option("shape").map(parse_shape).transpose()?;
    let model = load_model(args, model_path, shape.as_deref())?;
    for path in images {
        let channels = model.input_shape().get(1).copied().unwrap_or(1);
        let pixels = load_image(path, model.image_len(), channels)?;
        let c = model.classify(&pixels)?;
        let line = serde_json::json!({
            "image": path,
            "label": c.label,
            "probabilities": c.probabilities,
            "logits": c.logits,
        });
        println!("{line}");
    }
    Ok(())
}

fn grad(args: &Args) -> Result<()> {
    use blindspot::grad::Objective;
    args.refuse_unknown(&known(&["target", "objective", "out"]))?;
    let [model_path, input_path] = args.positional.as_slice() else {
        return Err(Error::Input(format!("grad needs MODEL and INPUT.npy\n\n{USAGE}")));
    };
    let target: usize = args
        .option("target")
        .ok_or_else(|| Error::Input("grad needs --target K (the class the objective aims at)".into()))?
        .parse()
        .map_err(|_| Error::Input("--target takes a class number".into()))?;
    let objective_name = args.option("objective").unwrap_or("ce");
    let objective = Objective::parse(objective_name)?;
    let out = args.option("out").unwrap_or("grad.npy");
    let input: ndarray::ArrayD<f32> = ndarray_npy::read_npy(input_path)
        .map_err(|e| Error::Data(format!("{input_path}: not a float32 .npy ({e})")))?;
    let model = load_model(args, model_path, Some(input.shape()))?;
    let gradient = model.gradient(&objective)?;
    let x: Vec<f32> = input.iter().copied().collect();
    let eval = gradient.evaluate(&x, &gradient.one_hot(target)?)?;
    let array = ndarray::ArrayD::from_shape_vec(input.shape(), eval.gradient)
        .map_err(|e| Error::Run(e.to_string()))?;
    ndarray_npy::write_npy(out, &array).map_err(|e| Error::Data(format!("{out}: {e}")))?;
    let line = serde_json::json!({
        "objective": objective_name,
        "value": eval.objective,
        "target": target,
        "logits": eval.logits,
        "out": out,
    });
    println!("{line}");
    Ok(())
}

fn number<T: std::str::FromStr>(args: &Args, name: &str, default: T) -> Result<T> {
    match args.option(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| Error::Input(format!("--{name} takes a number, not \"{v}\""))),
    }
}

fn attack(args: &Args) -> Result<()> {
    use blindspot::attack::{baselines, lbfgs, Goal};
    args.refuse_unknown(&known(&["target", "method", "out", "max-iterations", "c-steps", "epsilon", "step", "steps", "norm"]))?;
    let [model_path, input_path] = args.positional.as_slice() else {
        return Err(Error::Input(format!("attack needs MODEL and INPUT.npy\n\n{USAGE}")));
    };
    let input: ndarray::ArrayD<f32> = ndarray_npy::read_npy(input_path)
        .map_err(|e| Error::Data(format!("{input_path}: not a float32 .npy ({e})")))?;
    let model = load_model(args, model_path, Some(input.shape()))?;
    let x: Vec<f32> = input.iter().copied().collect();
    let target = args.option("target").ok_or_else(|| Error::Input("attack needs --target K or --target any".into()))?;
    let goal = match target {
        "any" => Goal::Untargeted { label: model.classify(&x)?.label },
        k => Goal::Target(k.parse().ok().filter(|&k| k < model.classes()).ok_or_else(|| {
            Error::Input(format!("--target \"{k}\" is not a class of this model: give one from 0 to {}, or \"any\"", model.classes() - 1))
        })?),
    };
    let method = args.option("method").unwrap_or("lbfgs");
    let outcome = match method {
        "lbfgs" => {
            let defaults = lbfgs::Options::default();
            let options = lbfgs::Options {
                max_iterations: number(args, "max-iterations", defaults.max_iterations)?,
                c_steps: number(args, "c-steps", defaults.c_steps)?,
                ..defaults
            };
            lbfgs::attack(&model, &x, goal, &options, |_| true)?
        }
        "fgsm" => baselines::fgsm(&model, &x, goal, number(args, "epsilon", 0.1)?)?,
        "pgd" => {
            let norm = args.option("norm").unwrap_or("linf");
            let epsilon = number(args, "epsilon", if norm == "l2" { 2.0 } else { 0.1 })?;
            let budget = baselines::Budget {
                epsilon,
                step: number(args, "step", epsilon / 10.0)?,
                iterations: number(args, "steps", 100)?,
            };
            match norm {
                "linf" => baselines::pgd_linf(&model, &x, goal, &budget)?,
                "l2" => baselines::pgd_l2(&model, &x, goal, &budget)?,
                other => return Err(Error::Input(format!("--norm \"{other}\": use linf or l2"))),
            }
        }
        other => return Err(Error::Input(format!("unknown method \"{other}\": use lbfgs, fgsm or pgd"))),
    };
    let out = args.option("out").unwrap_or("adv.npy");
    let array = ndarray::ArrayD::from_shape_vec(input.shape(), outcome.adversarial.clone())
        .map_err(|e| Error::Run(e.to_string()))?;
    ndarray_npy::write_npy(out, &array).map_err(|e| Error::Data(format!("{out}: {e}")))?;
    let line = serde_json::json!({
        "method": method,
        "target": match goal { Goal::Target(k) => serde_json::json!(k), Goal::Untargeted { .. } => serde_json::json!("any") },
        "success": outcome.success,
        "label": outcome.label,
        "probabilities": outcome.probabilities,
        "distortion": outcome.distortion,
        "l2": outcome.l2,
        "linf": outcome.linf,
        "iterations": outcome.iterations,
        "gradient_evaluations": outcome.gradient_evaluations,
        "seconds": outcome.seconds,
        "c": outcome.c,
        "out": out,
    });
    println!("{line}");
    Ok(())
}

fn manifest() -> Result<Vec<serde_json::Value>> {
    let json: serde_json::Value = serde_json::from_slice(&read("models/models.json")?)
        .map_err(|e| Error::Data(format!("models/models.json: {e}")))?;
    Ok(json["models"].as_array().cloned().unwrap_or_default())
}

/// The paper's quoted Tables 2-4, kept beside the models in models/models.json.
fn quoted_tables() -> Result<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(&read("models/models.json")?)
        .map_err(|e| Error::Data(format!("models/models.json: {e}")))?;
    Ok(json["paper_quoted"].clone())
}

/// A JSON string's text, or "" when it is none.
fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn percent(v: &serde_json::Value) -> String {
    v.as_f64().map(|e| format!("{:.2}%", e * 100.0)).unwrap_or_else(|| "-".into())
}

fn table1(args: &Args) -> Result<()> {
    args.refuse_unknown(&["n", "seed", "models", "csv"])?;
    let mut csv = String::from("model,digit,label,target,success,distortion\n");
    let n: usize = number(args, "n", 1000)?;
    let seed: u64 = number(args, "seed", blindspot::paper::SEED)?;
    let table1 = ["fc10-1e-4", "fc10-1e-2", "fc10-1", "fc100-100-10", "fc200-200-10", "ae400-10"];
    let wanted: Vec<String> = match args.option("models") {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => table1.iter().map(|s| s.to_string()).collect(),
    };
    let pack = read("models/data/mnist-test-10k.bin")?;
    println!("| model | train err | test err | av. min. distortion | successes | paper train err | paper test err | paper distortion |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let models = manifest()?;
    let lab = Lab::new();
    for id in &wanted {
        // one model at a time, so each row is printed as soon as it is measured; a path to an
        // .onnx file (a model trained with blindspot train) has no card figures
        let m = lab_load(&lab, &models, id)?;
        let Response::Distortions(rows) = ask_table(&lab, 1, std::slice::from_ref(id), &pack, n, seed)? else {
            unreachable!("Table 1 is answered with distortion rows")
        };
        let row = &rows[0];
        for a in &row.attacks {
            csv.push_str(&format!("{id},{},{},{},{},{}\n", a.digit, a.label, a.target, a.success, a.distortion));
        }
        let paper = &m["paper"];
        println!(
            "| {} | {} | {} | {:.4} | {}/{} | {} | {} | {} |",
            m["name"].as_str().unwrap_or(id),
            percent(&m["train_error"]),
            percent(&m["test_error"]),
            row.mean_distortion,
            row.successes,
            row.digits,
            percent(&paper["train_error"]),
            percent(&paper["test_error"]),
            paper["distortion"].as_f64().map(|d| format!("{d}")).unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(path) = args.option("csv") {
        std::fs::write(path, csv).map_err(|e| Error::Data(format!("{path}: {e}")))?;
    }
    Ok(())
}

/// Loads the model of models/models.json `id` (or the .onnx file at the path `id`) into `lab`
/// under `id`; its manifest entry (a file's has only its name).
fn lab_load(lab: &Lab, models: &[serde_json::Value], id: &str) -> Result<serde_json::Value> {
    let (m, path) = if id.ends_with(".onnx") {
        (serde_json::json!({ "name": id }), id.to_string())
    } else {
        let m = models
            .iter()
            .find(|m| m["id"] == id)
            .ok_or_else(|| Error::Input(format!("no model \"{id}\" in models/models.json")))?;
        (m.clone(), format!("models/{}", m["file"].as_str().unwrap_or_default()))
    };
    let load = Request::Load { key: id.into(), bytes: read(&path)?, shape: None, preprocessing: None, backend: None, detected: None };
    lab.answer_blocking(0, load, &Quiet).map_err(|e| e.in_file(&path))?;
    Ok(m)
}

/// The lab's `table` request: the paper's Table `table` for the loaded models `keys`.
fn ask_table(lab: &Lab, table: u8, keys: &[String], pack: &[u8], n: usize, seed: u64) -> Result<Response> {
    lab.answer_blocking(1, Request::Table { table, keys: keys.to_vec(), pack: pack.to_vec(), n, seed }, &Quiet)
}

fn table_args(args: &Args) -> Result<(usize, u64, Vec<u8>)> {
    args.refuse_unknown(&["n", "seed"])?;
    let pack = read("models/data/mnist-test-10k.bin")?;
    Ok((number(args, "n", 1000)?, number(args, "seed", blindspot::paper::SEED)?, pack))
}

fn table2(args: &Args) -> Result<()> {
    let (n, seed, pack) = table_args(args)?;
    let ids: Vec<String> =
        ["fc10-1e-4", "fc10-1e-2", "fc10-1", "fc100-100-10", "fc200-200-10", "ae400-10"].map(String::from).to_vec();
    // the paper's Table 2 as quoted in shared/PAPER.md (models/models.json): (row, column) -> error rate
    let quoted = quoted_tables()?;
    let quoted: Vec<(String, String, String)> = quoted["table2"]
        .as_array()
        .map(|cells| cells.iter().map(|c| (text(&c["row"]), text(&c["col"]), text(&c["rate"]))).collect())
        .unwrap_or_default();
    let models = manifest()?;
    let lab = Lab::new();
    let loaded: Vec<serde_json::Value> = ids.iter().map(|id| lab_load(&lab, &models, id)).collect::<Result<_>>()?;
    let Response::TransferTable(table) = ask_table(&lab, 2, &ids, &pack, n, seed)? else {
        unreachable!("Table 2 is answered with a transfer table")
    };
    let name_of = |id: &str| loaded.iter().find(|m| m["id"] == id).and_then(|m| m["name"].as_str()).unwrap_or(id).to_string();
    let header: Vec<String> = ids.iter().map(|id| name_of(id)).collect();
    println!("Error rate on examples made for the row's model (or noise), fed to the column's model; the paper's figure in brackets where shared/PAPER.md quotes it. {} test digits.\n", table.digits);
    println!("| made for | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(header.len()));
    for row in &table.rows {
        let row_name = match row.examples.strip_prefix("noise ") {
            Some(stddev) => format!("Gaussian noise, stddev {stddev}"),
            None => format!("{} (distortion {:.3})", name_of(&row.examples), row.distortion),
        };
        let cells: Vec<String> = ids
            .iter()
            .zip(&row.error_rates)
            .map(|(col_id, rate)| {
                let quote = quoted.iter().find(|(r, c, _)| *r == row.examples && c == col_id).map(|(_, _, q)| format!(" ({q})")).unwrap_or_default();
                format!("{:.1}%{quote}", rate * 100.0)
            })
            .collect();
        println!("| {row_name} | {} |", cells.join(" | "));
    }
    Ok(())
}

fn table3(args: &Args) -> Result<()> {
    let (n, seed, pack) = table_args(args)?;
    let ids: Vec<String> = ["fc100-100-10-p1", "fc123-456-10-p1", "fc100-100-10-p2"].map(String::from).to_vec();
    let models = manifest()?;
    let lab = Lab::new();
    for id in &ids {
        lab_load(&lab, &models, id)?;
    }
    let Response::TransferTable(table) = ask_table(&lab, 3, &ids, &pack, n, seed)? else {
        unreachable!("Table 3 is answered with a transfer table")
    };
    println!("Examples made for FC100-100-10 trained on P1 (first 30,000 training digits), {} test digits; error rate induced, the paper's figure in brackets.\n", table.digits);
    println!("| examples | distortion | FC100-100-10 (P1) | FC123-456-10 (P1) | FC100-100-10' (P2) |");
    println!("|---|---:|---:|---:|---:|");
    // the paper's Tables 3-4 as quoted (models/models.json): per row, a figure per column model
    let quoted = quoted_tables()?;
    let figures = |id: &str| -> Vec<String> {
        let rows = quoted["table3"]["rows"].as_array().cloned().unwrap_or_default();
        let row = rows.into_iter().find(|r| r["id"] == id).unwrap_or_default();
        (0..3).map(|k| text(&row["figures"][k])).map(|q| if q.is_empty() { q } else { format!(" ({q})") }).collect()
    };
    for row in &table.rows {
        let (name, quotes) = match row.examples.as_str() {
            "adversarial" => ("adversarial", figures("adversarial")),
            "amplified" => ("amplified to distortion 0.1", figures("amplified")),
            _ => ("Gaussian noise, stddev 0.1", figures("noise")),
        };
        let cells: Vec<String> = row.error_rates.iter().zip(quotes).map(|(rate, quote)| format!("{:.1}%{quote}", rate * 100.0)).collect();
        println!("| {name} | {:.3} | {} |", row.distortion, cells.join(" | "));
    }
    Ok(())
}

/// The digit pack at `path`, gunzipped when its name ends in .gz.
fn digit_pack(path: &str) -> Result<blindspot::DigitPack> {
    let bytes = read(path)?;
    if !path.ends_with(".gz") {
        return blindspot::DigitPack::parse(&bytes).map_err(|e| e.in_file(path));
    }
    let mut unpacked = vec![];
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut unpacked)
        .map_err(|e| Error::Data(format!("{path}: not a gzipped digit pack ({e}); rebuild it with tools/pack_digits.py")))?;
    blindspot::DigitPack::parse(&unpacked).map_err(|e| e.in_file(path))
}

fn train(args: &Args) -> Result<()> {
    use blindspot::train::{Method, Optimizer, Schedule, Settings, Trainer};
    args.refuse_unknown(&[
        "out", "epochs", "batch", "lr", "optimizer", "weight-decay", "adversarial", "epsilon", "n", "seed", "pool", "refresh", "schedule", "pool-weight",
    ])?;
    let [model_path] = args.positional.as_slice() else {
        return Err(Error::Input(format!("train needs MODEL\n\n{USAGE}")));
    };
    let out = args.option("out").ok_or_else(|| Error::Input("train needs --out TRAINED.onnx".into()))?;
    let name = args.option("adversarial").unwrap_or("none");
    if !["lbfgs", "layers"].contains(&name) && ["pool", "refresh", "pool-weight"].iter().any(|o| args.option(o).is_some()) {
        return Err(Error::Input("--pool, --refresh and --pool-weight go with --adversarial lbfgs or layers".into()));
    }
    let method = Method::parse(
        name,
        number(args, "epsilon", 0.1)?,
        number(args, "pool", 1000)?,
        number(args, "refresh", 0.1)?,
        number(args, "pool-weight", 0.5)?,
    )
        .map_err(|e| match e {
            Error::Input(why) => Error::Input(why.replacen("adversarial training ", "--adversarial ", 1)),
            other => other,
        })?;
    let epochs: usize = number(args, "epochs", 1)?;
    let batch: usize = number(args, "batch", 32)?;
    let n: usize = number::<usize>(args, "n", 60_000)?.min(60_000);
    let settings = Settings {
        learning_rate: number(args, "lr", 0.01)?,
        optimizer: Optimizer::parse(args.option("optimizer").unwrap_or("sgd"))?,
        weight_decay: number(args, "weight-decay", 0.0)?,
        batch,
        seed: number(args, "seed", blindspot::paper::SEED)?,
        cosine_steps: Schedule::parse(args.option("schedule").unwrap_or("constant"))?.steps(epochs, n, batch),
    };
    let bytes = read(model_path)?;
    let mut trainer = Trainer::new(&bytes, settings).map_err(|e| e.in_file(model_path))?;
    for frozen in trainer.trainable().frozen() {
        eprintln!("blindspot: {}", frozen.why);
    }
    let train = digit_pack("models/data/mnist-train-60k.bin.gz")?;
    let test = digit_pack("models/data/mnist-test-10k.bin")?;
    let n = n.min(train.len());
    let len = trainer.image_len();
    if len != train.rows * train.cols {
        return Err(Error::Input(format!("{model_path} takes {len} values an image; the MNIST digits have {}", train.rows * train.cols)));
    }
    let images: Vec<f32> = (0..n).flat_map(|i| train.input(i)).collect();
    let labels: Vec<usize> = (0..n).map(|i| train.labels[i] as usize).collect();
    let mut pool = method.pool(number(args, "seed", blindspot::paper::SEED)?);
    let mut layers = method.layer_pools(&bytes, &trainer, number(args, "seed", blindspot::paper::SEED)?)?;
    for epoch in 1..=epochs {
        let run = trainer.epoch_with(&images, &labels, method.adversarial(&mut pool, &mut layers, &bytes), |_, _| true)?;
        let written = trainer.write_onnx(&bytes)?;
        std::fs::write(out, &written).map_err(|e| Error::Data(format!("{out}: {e}")))?;
        let model = Classifier::load(&written, None).map_err(|e| e.in_file(out))?;
        println!(
            "{}",
            serde_json::json!({
                "epoch": epoch,
                "loss": run.loss,
                "train_error": blindspot::train::error(&model, &train, n)?,
                "test_error": blindspot::train::error(&model, &test, test.len())?,
                "pool": pool.len(),
                "seconds": run.seconds,
            })
        );
    }
    Ok(())
}

fn units(args: &Args) -> Result<()> {
    use blindspot::units;
    args.refuse_unknown(&["tensor", "unit", "seed", "top", "n"])?;
    let [model_path] = args.positional.as_slice() else {
        return Err(Error::Input(format!("units needs MODEL\n\n{USAGE}")));
    };
    let model = load_file(model_path, None)?;
    let Some(tensor) = args.option("tensor") else {
        for t in units::named_tensors(&model) {
            println!("{}", serde_json::json!({ "name": t.name, "shape": t.shape }));
        }
        return Ok(());
    };
    let (unit, seed): (usize, u64) = (number(args, "unit", 0)?, number(args, "seed", 1)?);
    let (top, n): (usize, usize) = (number(args, "top", 8)?, number(args, "n", 10_000)?);
    let pack = blindspot::DigitPack::parse(&read("models/data/mnist-test-10k.bin")?)?;
    let n = n.min(pack.len());
    let probe = units::Probe::new(&model, tensor)?;
    let images: Vec<f32> = (0..n).flat_map(|i| pack.input(i)).collect();
    let activations = probe.run(&images)?;
    let len = probe.tensor.len();
    let ranked = |direction: &[f32]| -> Result<Vec<serde_json::Value>> {
        Ok(units::top_k(&activations, len, direction, top)?
            .into_iter()
            .map(|(digit, value)| serde_json::json!({ "digit": digit, "label": pack.labels[digit], "value": value }))
            .collect())
    };
    let line = serde_json::json!({
        "tensor": tensor,
        "shape": probe.tensor.shape,
        "digits": n,
        "unit": unit,
        "unit_top": ranked(&units::unit(len, unit)?)?,
        "seed": seed,
        "direction_top": ranked(&units::random_direction(len, seed))?,
    });
    println!("{line}");
    Ok(())
}

fn lipschitz(args: &Args) -> Result<()> {
    args.refuse_unknown(&[])?;
    let [model_path] = args.positional.as_slice() else {
        return Err(Error::Input(format!("lipschitz needs MODEL\n\n{USAGE}")));
    };
    let model = load_file(model_path, None)?;
    print!("{}", blindspot::spectral::lipschitz(&model)?.markdown());
    Ok(())
}

fn serve_loss(args: &Args) -> Result<()> {
    use std::io::{Read, Write};
    args.refuse_unknown(&[])?;
    let [model_path] = args.positional.as_slice() else {
        return Err(Error::Input(format!("serve-loss needs MODEL\n\n{USAGE}")));
    };
    let model = load_file(model_path, None)?;
    let n = model.image_len();
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut losses: std::collections::HashMap<usize, blindspot::attack::Loss> = Default::default();
    let mut frame = vec![0u8; 4 + 4 * n];
    while stdin.read_exact(&mut frame).is_ok() {
        let target = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        let x: Vec<f32> = frame[4..].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let loss = match losses.entry(target) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(blindspot::attack::Loss::new(&model, blindspot::attack::Goal::Target(target))?)
            }
        };
        let at = loss.at(&x)?;
        let mut reply = at.value.to_le_bytes().to_vec();
        reply.extend(at.gradient.iter().chain(&at.logits).flat_map(|v| v.to_le_bytes()));
        stdout.write_all(&reply).and_then(|_| stdout.flush()).map_err(|e| Error::Run(e.to_string()))?;
    }
    Ok(())
}

fn bench(args: &Args) -> Result<()> {
    args.refuse_unknown(&["ms"])?;
    if args.positional.first().map(String::as_str) != Some("grad") {
        return Err(Error::Input(format!("bench takes one suite: grad\n\n{USAGE}")));
    }
    let ms: u64 = args.option("ms").unwrap_or("1000").parse().map_err(|_| Error::Input("--ms takes milliseconds".into()))?;
    let time = std::time::Duration::from_millis(ms);
    let manifest: serde_json::Value = serde_json::from_slice(&read("models/models.json")?)
        .map_err(|e| Error::Data(format!("models/models.json: {e}")))?;
    let mut models: Vec<(String, String)> = manifest["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["id"].as_str()?.to_string(), format!("models/{}", m["file"].as_str()?))))
        .collect();
    for zoo in ["mobilenet", "resnet"] {
        models.push((format!("{zoo} (test graph, 3x64x64)"), format!("tests/fixtures/zoo/{zoo}.onnx")));
    }
    // the CPU columns first, as they were before the WebGPU ones existed
    let gpu = blindspot::gpu::Gpu::request_blocking();
    println!("| model | parameters | forward / s | forward + gradient / s | gradient cost (forwards) | WebGPU forward + gradient / s | WebGPU / CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut refused = vec![];
    for (name, path) in models {
        let model = load_file(&path, None)?;
        let params = parameter_count(&model);
        let input: Vec<f32> = (0..model.image_len()).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
        let t = blindspot::bench::measure(&model, &input, time)?;
        let (on_gpu, versus) = match gpu.as_ref().map(|g| blindspot::bench::measure_gpu(g, &model, &input, time)) {
            Ok(Ok(rate)) => (format!("{rate:.0}"), format!("{:.2}", rate / t.gradient_per_s)),
            Ok(Err(e)) => {
                refused.push(format!("{name}: {e}"));
                ("-".into(), "-".into())
            }
            Err(_) => ("-".into(), "-".into()),
        };
        println!(
            "| {name} | {params} | {:.0} | {:.0} | {:.2} | {on_gpu} | {versus} |",
            t.forward_per_s,
            t.gradient_per_s,
            t.gradient_cost()
        );
    }
    println!();
    match &gpu {
        Ok(g) => println!(
            "WebGPU adapter: {}. A software adapter (lavapipe, llvmpipe, SwiftShader) emulates the GPU on the CPU: its rates say nothing about GPU speed.",
            g.adapter
        ),
        Err(e) => println!("WebGPU: no adapter here ({e}); its columns show \"-\"."),
    }
    for r in refused {
        println!("WebGPU refused {r}");
    }
    Ok(())
}

/// Weights in the graph: the sizes of its constant float tensors.
fn parameter_count(model: &Classifier) -> usize {
    model
        .graph()
        .nodes()
        .iter()
        .filter_map(|n| n.outputs[0].fact.konst.as_ref())
        .filter(|t| t.datum_type().is_float())
        .map(|t| t.len())
        .sum()
}

/// Reads one model input from a .png or .npy file and checks its size. A PNG becomes `channels`
/// planes: grey for 1, RGB for 3.
fn load_image(path: &str, expected: usize, channels: usize) -> Result<Vec<f32>> {
    let lower = path.to_ascii_lowercase();
    let pixels = if lower.ends_with(".npy") {
        read_npy(path)?
    } else if lower.ends_with(".png") {
        let (w, h, pixels) = blindspot::image::decode_png(&read(path)?, channels).map_err(|e| e.in_file(path))?;
        if w * h * channels != expected {
            return Err(Error::Input(format!(
                "{path} is {w}x{h}; the model takes {expected} pixels (resize it first)"
            )));
        }
        pixels
    } else {
        return Err(Error::Input(format!("{path}: give a .png or a .npy image")));
    };
    if pixels.len() != expected {
        return Err(Error::Input(format!(
            "{path} holds {} values; the model takes {expected}",
            pixels.len()
        )));
    }
    Ok(pixels)
}

fn read_npy(path: &str) -> Result<Vec<f32>> {
    use ndarray::ArrayD;
    use ndarray_npy::read_npy;
    match read_npy::<_, ArrayD<f32>>(path) {
        Ok(a) => Ok(a.iter().copied().collect()),
        Err(e) => match read_npy::<_, ArrayD<f64>>(path) {
            Ok(a) => Ok(a.iter().map(|&v| v as f32).collect()),
            Err(_) => Err(Error::Data(format!("{path}: not a float32 .npy ({e})"))),
        },
    }
}
