//! ONNX's own conformance cases replayed through blindspot: tract's forward pass against the case's
//! expected output, and the input gradient of <v, out> against a float64 finite-difference oracle
//! computed outside tract (tools/conformance.py, onnx's reference evaluator). Every case must pass
//! or be refused by name before anything runs; the coverage table in docs/gradients.md is this
//! test's output (`BLINDSPOT_BLESS=1` rewrites it).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use blindspot::grad::{GradientModel, Objective};
use blindspot::model::load_graph;
use blindspot::Error;
use ndarray::ArrayD;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MANIFEST: &str = "tests/fixtures/conformance/cases.json";
const DOC: &str = "docs/gradients.md";
const BEGIN: &str = "<!-- conformance table: begin (cargo test --test conformance; BLINDSPOT_BLESS=1 rewrites) -->";
const END: &str = "<!-- conformance table: end -->";

/// A directional derivative agrees when it is within this fraction of the case's largest
/// derivative (plus an absolute floor for cases whose derivatives are all about zero).
const RELATIVE: f64 = 1e-2;
const ABSOLUTE: f64 = 1e-4;

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Passed,
    /// x is on a kink, where the gradient is any subgradient: passed at the oracle's point moved
    /// off the kinks.
    PassedAtKink,
    /// An error before anything ran, naming what was refused.
    Refused(String),
    /// Ran, and stopped with an error naming the problem (a NaN computed from a finite input).
    Stopped(String),
    /// A number that disagrees with the oracle, or a panic: what must never happen.
    Failed(String),
}

struct Case {
    name: String,
    ops: Vec<String>,
    verdict: Verdict,
}

fn npz(path: &str) -> BTreeMap<String, Vec<f32>> {
    let file = std::fs::File::open(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut npz = ndarray_npy::NpzReader::new(file).unwrap();
    let names = npz.names().unwrap();
    names
        .into_iter()
        .map(|name| {
            let a: ArrayD<f32> = npz.by_name(&name).unwrap();
            (name.trim_end_matches(".npy").to_string(), a.iter().copied().collect())
        })
        .collect()
}

fn shape_of(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

/// A refusal's reason, short enough for the table: the error's kind and the op it names.
fn refusal(e: &Error) -> String {
    match e {
        Error::NoGradient(ops) => {
            let mut names: Vec<&str> = ops.iter().map(|(op, _)| op.as_str()).collect();
            names.dedup();
            format!("no gradient rule: {}", names.join(", "))
        }
        Error::UnsupportedOps(ops) => {
            let mut names: Vec<&str> = ops.iter().map(|(op, _)| op.as_str()).collect();
            names.dedup();
            format!("tract cannot run: {}", names.join(", "))
        }
        Error::Model(why) => match (shapes_stop(why), node_refusal(why)) {
            (Some(op), _) => format!("tract cannot work out the shapes at a {op} node"),
            (None, Some((op, reason))) => format!("{op}: {}", short(reason)),
            (None, None) => format!("error: {}", short(why)),
        },
        other => format!("error: {}", short(&other.to_string())),
    }
}

/// A refusal model.rs words as `node LABEL (Op): reason`: the op and the reason.
fn node_refusal(why: &str) -> Option<(&str, &str)> {
    let rest = why.strip_prefix("node ")?;
    let end = rest.find("): ")?;
    let op = rest[..end].rsplit('(').next()?;
    Some((op, &rest[end + 3..]))
}

/// The op tract's shape analysis stopped at, from model.rs's message: `... at node #37 "name" Pad with ...`.
fn shapes_stop(why: &str) -> Option<&str> {
    let rest = why.strip_prefix("tract cannot work out the shapes at node #")?;
    let after_name = rest.split('"').nth(2)?;
    after_name.split_whitespace().next()
}

fn replay(case: &Value) -> Verdict {
    let model = case["model"].as_str().unwrap();
    let shape = shape_of(&case["input_shape"]);
    let arrays = npz(case["arrays"].as_str().unwrap());
    let (x, expected, v) = (&arrays["x"], &arrays["expected"], &arrays["v"]);
    let directions = &arrays["directions"];
    let bytes = std::fs::read(format!("{ROOT}/{model}")).unwrap();

    let (typed, _) = match load_graph(&bytes, Some(&shape)) {
        Ok(loaded) => loaded,
        Err(e) => return Verdict::Refused(refusal(&e)),
    };
    let decluttered = match typed.into_decluttered() {
        Ok(m) => m,
        Err(e) => return Verdict::Refused(format!("error: simplifying: {}", short(&e.root_cause().to_string()))),
    };
    let mut forward = decluttered;
    let out = forward.output_outlets().unwrap()[0];
    forward.set_outlet_label(out, "conformance.out".into()).unwrap();
    let objective = Objective::Projection { tensor: "conformance.out".into() };
    let gradient = match GradientModel::build(&forward, &objective) {
        Ok(g) => g,
        Err(e) => return Verdict::Refused(refusal(&e)),
    };
    // one evaluation: the case's output (tract's forward pass) and the gradient of <v, out>
    let evaluation = match gradient.evaluate(x, v) {
        Ok(e) => e,
        Err(Error::Run(why)) if why.starts_with("the model computed") => {
            return Verdict::Stopped(short(&why));
        }
        Err(e) => return Verdict::Failed(format!("evaluating: {e}")),
    };
    let y = &evaluation.logits;
    if y.len() != expected.len() {
        return Verdict::Failed(format!("forward output has {} values, expected {}", y.len(), expected.len()));
    }
    let differs = |(a, b): (&f32, &f32)| ((*a as f64) - (*b as f64)).abs() > 1e-4 + 1e-3 * (*b as f64).abs();
    if let Some((i, (a, b))) = y.iter().zip(expected).enumerate().find(|(_, p)| differs(*p)) {
        // ONNX's expected output and its own reference evaluator disagree: the oracle decides
        if case["forward_ok"].as_bool().unwrap() {
            return Verdict::Failed(format!("forward value {i} is {a}, expected {b}"));
        }
    }

    let g = &evaluation.gradient;
    let n = x.len();
    let numbers = |key: &str| -> Vec<Vec<f64>> {
        case[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect())
            .collect()
    };
    let derivatives = numbers("derivatives");
    let scale = derivatives.iter().flatten().fold(0.0f64, |m, d| m.max(d.abs()));
    let tolerance = ABSOLUTE + RELATIVE * scale;
    let disagreement = |g: &[f32], derivatives: &[Vec<f64>]| -> Option<String> {
        derivatives.iter().enumerate().find_map(|(k, row)| {
            let u = &directions[k * n..(k + 1) * n];
            let reverse: f64 = g.iter().zip(u).map(|(&a, &b)| a as f64 * b as f64).sum();
            let error = row.iter().map(|d| (reverse - d).abs()).fold(f64::INFINITY, f64::min);
            (error > tolerance)
                .then(|| format!("directional derivative {k}: reverse mode {reverse:.6}, finite differences {row:?}"))
        })
    };
    let Some(wrong) = disagreement(g, &derivatives) else { return Verdict::Passed };
    // x on a kink or a tie (ReLU at 0, repeated maxima): the one-sided derivatives differ there and
    // the gradient is any subgradient, so the oracle also took the derivatives at a point moved off
    // the kinks; the reverse mode must agree there
    if case.get("jittered").is_none() {
        return Verdict::Failed(wrong);
    }
    let jittered = match gradient.evaluate(&arrays["x_jittered"], v) {
        Ok(e) => e,
        Err(e) => return Verdict::Failed(format!("evaluating at the jittered point: {e}")),
    };
    match disagreement(&jittered.gradient, &numbers("jittered")) {
        None => Verdict::PassedAtKink,
        Some(wrong) => Verdict::Failed(format!("at the jittered point: {wrong}")),
    }
}

fn short(text: &str) -> String {
    let first: String = text.chars().take(90).collect();
    first.replace('|', "\\|")
}

fn replay_all() -> Vec<Case> {
    let path = format!("{ROOT}/{MANIFEST}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("{MANIFEST} is missing: run `python3 tools/conformance.py` (scripts/test.sh does)")
    });
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    // BLINDSPOT_CONFORMANCE=substring replays only the cases whose name holds it (no table check)
    let only = std::env::var("BLINDSPOT_CONFORMANCE").unwrap_or_default();
    let cases: Vec<Value> = cases
        .into_iter()
        .filter(|c| c.get("skipped").is_none())
        .filter(|c| c["case"].as_str().unwrap().contains(&only))
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let verdict = catch_unwind(AssertUnwindSafe(|| replay(case)))
                    .unwrap_or_else(|_| Verdict::Failed("panicked".into()));
                let ops = case["ops"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
                let name = format!("{}/{}", case["source"].as_str().unwrap(), case["case"].as_str().unwrap());
                results.lock().unwrap().push(Case { name, ops, verdict });
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    results
}

/// One row per ONNX op: a case counts under every op its graph holds.
fn table(results: &[Case], skipped: usize) -> String {
    #[derive(Default)]
    struct Row {
        cases: usize,
        passed: usize,
        refused: BTreeMap<String, usize>,
        stopped: BTreeMap<String, usize>,
        failed: usize,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for case in results {
        let mut ops: Vec<&str> = case.ops.iter().map(String::as_str).collect();
        ops.sort();
        ops.dedup();
        for op in ops {
            let row = rows.entry(op).or_default();
            row.cases += 1;
            match &case.verdict {
                Verdict::Passed | Verdict::PassedAtKink => row.passed += 1,
                Verdict::Refused(why) => *row.refused.entry(why.clone()).or_default() += 1,
                Verdict::Stopped(why) => *row.stopped.entry(why.clone()).or_default() += 1,
                Verdict::Failed(_) => row.failed += 1,
            }
        }
    }
    let count = |f: fn(&Verdict) -> bool| results.iter().filter(|c| f(&c.verdict)).count();
    let passed = count(|v| matches!(v, Verdict::Passed | Verdict::PassedAtKink));
    let kinks = count(|v| *v == Verdict::PassedAtKink);
    let refused = count(|v| matches!(v, Verdict::Refused(_)));
    let stopped = count(|v| matches!(v, Verdict::Stopped(_)));
    let failed = count(|v| matches!(v, Verdict::Failed(_)));
    let mut out = format!(
        "{} cases replayed ({skipped} more skipped by tools/conformance.py, each with its reason in \
         cases.json): **{passed} passed** ({kinks} of them, with x on a kink, at a point moved off it), **{refused} refused**, \
         **{stopped} stopped** with an error at run time, **{failed} failed**.\n\n\
         | op | cases | passed | refused (why) | stopped (why) | failed |\n|---|---:|---:|---|---|---:|\n",
        results.len()
    );
    let why = |map: &BTreeMap<String, usize>| {
        let total = map.values().sum::<usize>();
        if total == 0 {
            return "0".to_string();
        }
        let parts: Vec<String> = map.iter().map(|(w, n)| format!("{n}: {w}")).collect();
        format!("{total} ({})", parts.join("; "))
    };
    for (op, row) in rows {
        out += &format!(
            "| {op} | {} | {} | {} | {} | {} |\n",
            row.cases,
            row.passed,
            why(&row.refused),
            why(&row.stopped),
            row.failed
        );
    }
    out
}

#[test]
fn onnx_conformance_cases_pass_or_are_refused_by_name() {
    let text = std::fs::read_to_string(format!("{ROOT}/{MANIFEST}")).unwrap_or_default();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    let skipped = all.iter().filter(|c| c.get("skipped").is_some()).count();
    let results = replay_all();
    if std::env::var("BLINDSPOT_CONFORMANCE").is_ok() {
        for case in &results {
            println!("{}: {:?}", case.name, case.verdict);
        }
        return;
    }
    assert!(results.len() > 1000, "only {} conformance cases to replay", results.len());
    let table = table(&results, skipped);
    std::fs::create_dir_all(format!("{ROOT}/target")).unwrap();
    std::fs::write(format!("{ROOT}/target/conformance.md"), &table).unwrap();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Failed(why) => Some(format!("{}: {why}", c.name)),
            _ => None,
        })
        .collect();
    std::fs::write(format!("{ROOT}/target/conformance-failures.txt"), failures.join("\n")).unwrap();
    assert!(failures.is_empty(), "{} cases wrong without an error:\n{}", failures.len(), failures.join("\n"));
    let doc_path = format!("{ROOT}/{DOC}");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (head, rest) = doc.split_once(BEGIN).expect("docs/gradients.md has the conformance table markers");
    let (committed, tail) = rest.split_once(END).expect("docs/gradients.md has the table's end marker");
    if std::env::var("BLINDSPOT_BLESS").is_ok() {
        std::fs::write(&doc_path, format!("{head}{BEGIN}\n{table}{END}{tail}")).unwrap();
    } else {
        assert_eq!(
            committed.trim(),
            table.trim(),
            "the committed conformance table differs from this replay (target/conformance.md); \
             BLINDSPOT_BLESS=1 cargo test --test conformance rewrites it"
        );
    }
}
