//! L-BFGS-B (`blindspot::optim::lbfgsb`) against scipy's fmin_l_bfgs_b on the problems of tools/lbfgsb_reference.py.

use std::cell::RefCell;

use blindspot::optim::asktell::{Ask, AskTell};
use blindspot::optim::lbfgsb::{projected_gradient_norm, Convergence, Options, Outcome, Stop};
use blindspot::optim::minimize;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lbfgsb");
const PROBLEMS: [&str; 7] = [
    "rosenbrock_n2",
    "rosenbrock_n10",
    "rosenbrock_n25",
    "rosenbrock_mixed_n10",
    "rosenbrock_mixed_n25",
    "driver1_n25",
    "quadratic_n50",
];

type Objective = Box<dyn Fn(&[f64]) -> (f64, Vec<f64>)>;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn rosenbrock(x: &[f64]) -> (f64, Vec<f64>) {
    let n = x.len();
    let (mut f, mut g) = (0.0, vec![0.0; n]);
    for i in 0..n - 1 {
        let d = x[i + 1] - x[i] * x[i];
        let e = 1.0 - x[i];
        f += 100.0 * d * d + e * e;
        g[i] += -400.0 * x[i] * d - 2.0 * e;
        g[i + 1] += 200.0 * d;
    }
    (f, g)
}

/// The test problem of the L-BFGS-B 3.0 distribution (driver1.f).
fn driver1(x: &[f64]) -> (f64, Vec<f64>) {
    let n = x.len();
    let mut f = (x[0] - 1.0).powi(2);
    let mut g = vec![0.0; n];
    g[0] = 2.0 * (x[0] - 1.0);
    for i in 1..n {
        let d = x[i] - x[i - 1] * x[i - 1];
        f += 4.0 * d * d;
        g[i - 1] += -16.0 * x[i - 1] * d;
        g[i] += 8.0 * d;
    }
    (f, g)
}

fn objective(problem: &Value) -> Objective {
    match problem["kind"].as_str().expect("kind") {
        "rosenbrock" => Box::new(rosenbrock),
        "driver1" => Box::new(driver1),
        "quadratic" => {
            // 0.5 x'Ax - b'x
            let a: Vec<Vec<f64>> = problem["a"]
                .as_array()
                .expect("A")
                .iter()
                .map(floats)
                .collect();
            let b = floats(&problem["b"]);
            Box::new(move |x: &[f64]| {
                let g: Vec<f64> = a
                    .iter()
                    .zip(&b)
                    .map(|(row, bi)| row.iter().zip(x).map(|(aij, xj)| aij * xj).sum::<f64>() - bi)
                    .collect();
                let f = x
                    .iter()
                    .zip(&g)
                    .zip(&b)
                    .map(|((xi, gi), bi)| 0.5 * xi * (gi + bi) - bi * xi)
                    .sum();
                (f, g)
            })
        }
        other => panic!("unknown problem kind {other}"),
    }
}

fn load(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn inside(x: &[f64], lower: &[f64], upper: &[f64]) -> bool {
    x.iter()
        .zip(lower.iter().zip(upper))
        .all(|(xi, (l, u))| l <= xi && xi <= u)
}

#[test]
fn matches_scipy_on_reference_problems() {
    println!(
        "{:22} {:>21} {:>4} {:>4} | {:>21} {:>4} {:>4} | {:>8} {:>8} stop",
        "problem", "scipy f*", "nit", "nfev", "ours f*", "nit", "nfev", "max|dx|", "pg"
    );
    let mut failures = Vec::new();
    for name in PROBLEMS {
        let problem = load(name);
        let fg = objective(&problem);
        let (x0, lower, upper) = (
            floats(&problem["x0"]),
            floats(&problem["lower"]),
            floats(&problem["upper"]),
        );
        let scipy = &problem["scipy"];
        let (scipy_x, scipy_f) = (floats(&scipy["x"]), scipy["f"].as_f64().expect("f"));
        let scipy_nit = scipy["nit"].as_u64().expect("nit") as usize;
        let scipy_nfev = scipy["nfev"].as_u64().expect("nfev") as usize;
        let scipy_pg = scipy["projected_gradient_inf"].as_f64().expect("pg");
        let options = &problem["options"];
        assert_eq!(options["m"].as_u64(), Some(10));
        let options = Options {
            memory: 10,
            pgtol: options["pgtol"].as_f64().expect("pgtol"),
            factr: options["factr"].as_f64().expect("factr"),
            ..Options::default()
        };

        let outside = RefCell::new(0usize);
        let calls = RefCell::new(0usize);
        let outcome = minimize(
            |x| {
                *calls.borrow_mut() += 1;
                if !inside(x, &lower, &upper) {
                    *outside.borrow_mut() += 1;
                }
                fg(x)
            },
            &x0,
            &lower,
            &upper,
            &options,
            |_, _, _| true,
        );

        let dx = outcome
            .x
            .iter()
            .zip(&scipy_x)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let (_, g) = fg(&outcome.x);
        let pg = projected_gradient_norm(&outcome.x, &g, &lower, &upper);
        println!(
            "{name:22} {scipy_f:>21.14e} {scipy_nit:>4} {scipy_nfev:>4} | {:>21.14e} {:>4} {:>4} | {dx:>8.1e} {pg:>8.1e} {:?}",
            outcome.f, outcome.iterations, outcome.evaluations, outcome.stop
        );

        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{name}: {what}"));
            }
        };
        check(
            outcome.stop.is_converged(),
            format!("stopped with {:?}", outcome.stop),
        );
        check(
            (outcome.f - scipy_f).abs() <= 1e-8 * scipy_f.abs().max(1.0) + 1e-12,
            format!("f {} vs scipy {scipy_f}", outcome.f),
        );
        check(dx <= 1e-4, format!("max |x - x_scipy| = {dx:e}"));
        // Stopping on the relative reduction of f leaves a projected gradient above pgtol, as
        // scipy's does on the same problem; on the pgtol test it must be below pgtol.
        check(
            (pg - outcome.projected_gradient_norm).abs() <= 1e-12 * pg.max(1.0),
            "reported projected gradient".into(),
        );
        match outcome.stop {
            Stop::Converged(Convergence::ProjectedGradient) => {
                check(pg <= options.pgtol, format!("pg {pg:e} > pgtol"))
            }
            _ => check(
                pg <= 2.0 * scipy_pg + options.pgtol,
                format!("pg {pg:e}, scipy's {scipy_pg:e}"),
            ),
        }
        check(
            outcome.iterations <= 2 * scipy_nit,
            format!("{} iterations, scipy {scipy_nit}", outcome.iterations),
        );
        check(
            outcome.evaluations <= 2 * scipy_nfev,
            format!("{} evaluations, scipy {scipy_nfev}", outcome.evaluations),
        );
        check(
            outcome.evaluations == *calls.borrow(),
            "evaluation count".into(),
        );
        check(
            *outside.borrow() == 0,
            format!("{} evaluations outside the box", outside.borrow()),
        );
        check(
            inside(&outcome.x, &lower, &upper),
            "final x outside the box".into(),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn progress_callback_cancels() {
    let n = 25;
    let x0: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect();
    let (lower, upper) = (vec![-2.0; n], vec![2.0; n]);
    let mut seen = Vec::new();
    let outcome = minimize(
        rosenbrock,
        &x0,
        &lower,
        &upper,
        &Options::default(),
        |iteration, f, x| {
            assert_eq!(x.len(), n);
            assert_eq!(f, rosenbrock(x).0);
            seen.push(iteration);
            iteration < 3
        },
    );
    assert_eq!(outcome.stop, Stop::Cancelled);
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(outcome.iterations, 3);
    assert!(outcome.f < rosenbrock(&x0).0);
}

#[test]
fn every_evaluation_stays_in_the_box() {
    // Pulled hard towards (3, -3, 3, ...), far outside [-1, 0.5]^n: most bounds end up active,
    // and the line search runs into them at every step.
    let n = 40;
    let target: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { 3.0 } else { -3.0 })
        .collect();
    let lower: Vec<f64> = (0..n)
        .map(|i| if i % 5 == 0 { f64::NEG_INFINITY } else { -1.0 })
        .collect();
    let upper: Vec<f64> = (0..n)
        .map(|i| if i % 7 == 0 { f64::INFINITY } else { 0.5 })
        .collect();
    let x0: Vec<f64> = (0..n).map(|i| 0.3 * ((i as f64) * 0.7).sin()).collect();
    let points = RefCell::new(Vec::new());
    let outcome = minimize(
        |x| {
            points.borrow_mut().push(x.to_vec());
            // sum (x_i - t_i)^4 + (x_i - t_i)^2 + a coupling term, so the problem is not separable
            let mut f = 0.0;
            let mut g = vec![0.0; n];
            for i in 0..n {
                let d = x[i] - target[i];
                f += d.powi(4) + d * d;
                g[i] += 4.0 * d.powi(3) + 2.0 * d;
                if i + 1 < n {
                    let c = x[i] + x[i + 1];
                    f += 0.5 * c * c;
                    g[i] += c;
                    g[i + 1] += c;
                }
            }
            (f, g)
        },
        &x0,
        &lower,
        &upper,
        &Options {
            factr: 0.0,
            ..Options::default()
        },
        |_, _, x| {
            assert!(inside(x, &lower, &upper));
            true
        },
    );
    assert_eq!(
        outcome.stop,
        Stop::Converged(Convergence::ProjectedGradient)
    );
    assert!(
        outcome.projected_gradient_norm <= 1e-5,
        "{}",
        outcome.projected_gradient_norm
    );
    let points = points.into_inner();
    assert_eq!(points.len(), outcome.evaluations);
    for p in &points {
        assert!(
            inside(p, &lower, &upper),
            "evaluated outside the box: {p:?}"
        );
    }
    let active = (0..n)
        .filter(|&i| outcome.x[i] == lower[i] || outcome.x[i] == upper[i])
        .count();
    assert!(active >= n / 2, "only {active} active bounds");
}

#[test]
fn start_outside_the_box_is_projected() {
    let x0 = [5.0, -5.0];
    let (lower, upper) = ([-1.0, -1.0], [1.0, 1.0]);
    let first = RefCell::new(None);
    let outcome = minimize(
        |x| {
            first.borrow_mut().get_or_insert_with(|| x.to_vec());
            rosenbrock(x)
        },
        &x0,
        &lower,
        &upper,
        &Options::default(),
        |_, _, _| true,
    );
    assert_eq!(first.into_inner(), Some(vec![1.0, -1.0]));
    assert!(outcome.stop.is_converged(), "{:?}", outcome.stop);
    assert!(
        (outcome.x[0] - 1.0).abs() < 1e-4 && (outcome.x[1] - 1.0).abs() < 1e-4,
        "{:?}",
        outcome.x
    );
}

#[test]
fn unbounded_rosenbrock_reaches_the_minimum() {
    let x0 = [-1.2, 1.0];
    let inf = [f64::INFINITY; 2];
    let outcome = minimize(
        rosenbrock,
        &x0,
        &[-inf[0]; 2],
        &inf,
        &Options {
            pgtol: 1e-8,
            factr: 10.0,
            ..Options::default()
        },
        |_, _, _| true,
    );
    assert!(outcome.stop.is_converged(), "{:?}", outcome.stop);
    assert!(outcome.f < 1e-14, "{}", outcome.f);
}

#[test]
fn iteration_and_evaluation_limits() {
    let n = 10;
    let x0: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect();
    let (lower, upper) = (vec![-2.0; n], vec![2.0; n]);
    let outcome = minimize(
        rosenbrock,
        &x0,
        &lower,
        &upper,
        &Options {
            max_iterations: 5,
            ..Options::default()
        },
        |_, _, _| true,
    );
    assert_eq!(
        (outcome.stop.clone(), outcome.iterations),
        (Stop::MaxIterations, 5)
    );
    let outcome = minimize(
        rosenbrock,
        &x0,
        &lower,
        &upper,
        &Options {
            max_evaluations: 7,
            ..Options::default()
        },
        |_, _, _| true,
    );
    assert_eq!(outcome.stop, Stop::MaxEvaluations);
    assert!(
        outcome.evaluations >= 7 && outcome.evaluations < 7 + 20,
        "{}",
        outcome.evaluations
    );
}

#[test]
fn non_finite_objective_stops_cleanly() {
    let outcome = minimize(
        |x| {
            if x[0] > 0.5 {
                (f64::NAN, vec![f64::NAN; 2])
            } else {
                rosenbrock(x)
            }
        },
        &[0.0, 0.0],
        &[-2.0, -2.0],
        &[2.0, 2.0],
        &Options::default(),
        |_, _, _| true,
    );
    // Either the line search backs off the NaN region and converges, or it gives up; never a panic,
    // and the reported point is a finite one.
    assert!(outcome.f.is_finite(), "{outcome:?}");
    let outcome = minimize(
        |_| (f64::NAN, vec![0.0; 2]),
        &[0.0, 0.0],
        &[-1.0; 2],
        &[1.0; 2],
        &Options::default(),
        |_, _, _| true,
    );
    assert!(
        matches!(outcome.stop, Stop::NumericalFailure(_)),
        "{:?}",
        outcome.stop
    );
}

/// The attack's largest problem, 224 x 224 x 3 pixels in [0, 1]: memory and time must scale as O(m n).
#[test]
fn image_sized_problem() {
    let n = 224 * 224 * 3;
    // A separable quadratic with a spread of curvatures; its minimiser lies partly outside [0, 1].
    let curvature: Vec<f64> = (0..n).map(|i| 1.0 + (i % 97) as f64 / 10.0).collect();
    let centre: Vec<f64> = (0..n).map(|i| ((i % 13) as f64 - 3.0) / 6.0).collect();
    let fg = |x: &[f64]| {
        let mut f = 0.0;
        let g: Vec<f64> = (0..n)
            .map(|i| {
                let d = x[i] - centre[i];
                f += 0.5 * curvature[i] * d * d;
                curvature[i] * d
            })
            .collect();
        (f, g)
    };
    let start = std::time::Instant::now();
    // f sums n terms, so the relative-reduction test would stop early; converge on the gradient.
    let options = Options {
        factr: 0.0,
        ..Options::default()
    };
    let outcome = minimize(
        fg,
        &vec![0.5; n],
        &vec![0.0; n],
        &vec![1.0; n],
        &options,
        |_, _, _| true,
    );
    println!(
        "n = {n}: {:?} after {} iterations, {} evaluations, {:?}",
        outcome.stop,
        outcome.iterations,
        outcome.evaluations,
        start.elapsed()
    );
    assert_eq!(
        outcome.stop,
        Stop::Converged(Convergence::ProjectedGradient)
    );
    let worst = (0..n)
        .map(|i| (outcome.x[i] - centre[i].clamp(0.0, 1.0)).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "max error {worst}");
}

/// Everything a run shows: where the objective was evaluated, the progress reports, the outcome.
#[derive(Debug, PartialEq)]
struct Trace {
    points: Vec<Vec<u64>>,
    reports: Vec<(usize, u64, Vec<u64>)>,
    outcome: (Vec<u64>, u64, usize, usize, Stop, u64),
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Runs `driver` (the driver asked and told, or calling its objective) on `fg`, cancelling after
/// `cancel_after` iterations.
fn trace<D>(driver: D, fg: &Objective, x0: &[f64], lower: &[f64], upper: &[f64], options: &Options, cancel_after: usize) -> Trace
where
    D: FnOnce(
        &mut dyn FnMut(&[f64]) -> (f64, Vec<f64>),
        &[f64],
        &[f64],
        &[f64],
        &Options,
        &mut dyn FnMut(usize, f64, &[f64]) -> bool,
    ) -> Outcome,
{
    let mut points = Vec::new();
    let mut reports = Vec::new();
    let o = driver(
        &mut |x| {
            points.push(bits(x));
            fg(x)
        },
        x0,
        lower,
        upper,
        options,
        &mut |i, f, x| {
            reports.push((i, f.to_bits(), bits(x)));
            i < cancel_after
        },
    );
    Trace {
        points,
        reports,
        outcome: (bits(&o.x), o.f.to_bits(), o.iterations, o.evaluations, o.stop, o.projected_gradient_norm.to_bits()),
    }
}

/// An objective: value and gradient at x.
type ValueAndGradient<'a> = dyn FnMut(&[f64]) -> (f64, Vec<f64>) + 'a;

/// The ask/tell optimiser driven by a loop, as the browser's GPU path drives it.
fn ask_tell_minimize(
    f: &mut ValueAndGradient,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &Options,
    progress: &mut dyn FnMut(usize, f64, &[f64]) -> bool,
) -> Outcome {
    let mut optimiser = AskTell::new(x0, lower, upper, options);
    loop {
        match optimiser.ask() {
            Ask::Evaluate(x) => {
                let (value, gradient) = f(&x);
                optimiser.tell(value, gradient);
            }
            Ask::Iteration { iteration, f, x } => {
                if !progress(iteration, f, &x) {
                    optimiser.cancel();
                }
            }
            Ask::Done(outcome) => return outcome,
        }
    }
}

/// Asked and told, the driver reruns basin's iterations from snapshots: it must evaluate the same
/// points, report the same iterates and end the same way, bit for bit, as `minimize`, where it
/// calls the objective itself.
#[test]
fn ask_tell_runs_exactly_as_basin_calling_the_objective() {
    let mut runs = 0;
    for name in PROBLEMS {
        let problem = load(name);
        let fg = objective(&problem);
        let (x0, lower, upper) = (floats(&problem["x0"]), floats(&problem["lower"]), floats(&problem["upper"]));
        let options = Options {
            pgtol: problem["options"]["pgtol"].as_f64().expect("pgtol"),
            factr: problem["options"]["factr"].as_f64().expect("factr"),
            ..Options::default()
        };
        let limited = [
            options.clone(),
            Options { max_iterations: 4, ..options.clone() },
            Options { max_evaluations: 9, ..options.clone() },
            Options { memory: 3, ..options.clone() },
        ];
        for (k, options) in limited.iter().enumerate() {
            let cancel_after = if k == 0 { 5 } else { usize::MAX };
            let old = trace(|f, x0, l, u, o, p| ask_tell_minimize(f, x0, l, u, o, p), &fg, &x0, &lower, &upper, options, cancel_after);
            let new = trace(|f, x0, l, u, o, p| minimize(f, x0, l, u, o, p), &fg, &x0, &lower, &upper, options, cancel_after);
            assert!(!old.points.is_empty());
            assert_eq!(old, new, "{name}, options {options:?}");
            runs += 1;
        }
    }
    assert_eq!(runs, 4 * PROBLEMS.len());
}

#[test]
fn ask_tell_repeats_its_question_and_cancels_between_answers() {
    let x0 = [-1.2, 1.0];
    let (lower, upper) = ([-2.0; 2], [2.0; 2]);
    let mut optimiser = AskTell::new(&x0, &lower, &upper, &Options::default());
    let mut iterations = 0;
    loop {
        let x = match optimiser.ask() {
            Ask::Evaluate(x) => x,
            Ask::Iteration { .. } => {
                iterations += 1;
                continue;
            }
            Ask::Done(outcome) => panic!("ended before 3 iterations: {outcome:?}"),
        };
        assert!(matches!(optimiser.ask(), Ask::Evaluate(again) if again == x), "asking again repeats the point");
        if iterations == 3 {
            // cancelled with an evaluation outstanding: the run ends at its last iterate
            optimiser.cancel();
            let Ask::Done(outcome) = optimiser.ask() else { panic!("a cancelled run is done") };
            assert_eq!((outcome.stop.clone(), outcome.iterations), (Stop::Cancelled, 3));
            assert_eq!(outcome.evaluations, optimiser.evaluations());
            assert_eq!(outcome.f, rosenbrock(&outcome.x).0);
            assert!(matches!(optimiser.ask(), Ask::Done(again) if again.x == outcome.x));
            break;
        }
        let (f, g) = rosenbrock(&x);
        optimiser.tell(f, g);
    }
}

#[test]
#[should_panic(expected = "none is outstanding")]
fn telling_without_being_asked_panics() {
    let mut optimiser = AskTell::new(&[0.0], &[-1.0], &[1.0], &Options::default());
    optimiser.tell(0.0, vec![0.0]);
}
