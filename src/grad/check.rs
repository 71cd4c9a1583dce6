//! Gradient checking: reverse mode against central finite differences, coordinate by coordinate.

use tract_onnx::tract_core::internal::*;

use super::{GradientModel, Objective};

/// A small deterministic generator (xorshift), so checks repeat exactly.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() + 1.0) / 2.0 * n as f32) as usize % n
    }
}

/// The worst disagreement found by [`finite_differences`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disagreement {
    pub coordinate: usize,
    pub reverse: f64,
    pub numeric: f64,
    /// |reverse - numeric| / max(1, |numeric|)
    pub error: f64,
}

/// Compares the gradient at `x` with central differences of the objective with step `h`, on
/// `coordinates` (all when None). Differences are formed in f64 from the f32 objective.
pub fn finite_differences(
    model: &GradientModel,
    x: &[f32],
    parameter: &[f32],
    h: f32,
    coordinates: Option<&[usize]>,
) -> crate::Result<Disagreement> {
    let gradient = model.evaluate(x, parameter)?.gradient;
    let all: Vec<usize> = (0..x.len()).collect();
    let mut worst = Disagreement { coordinate: 0, reverse: 0.0, numeric: 0.0, error: 0.0 };
    let mut probe = x.to_vec();
    for &i in coordinates.unwrap_or(&all) {
        probe[i] = x[i] + h;
        let up = model.evaluate(&probe, parameter)?.objective as f64;
        probe[i] = x[i] - h;
        let down = model.evaluate(&probe, parameter)?.objective as f64;
        probe[i] = x[i];
        let step = (x[i] + h) as f64 - (x[i] - h) as f64;
        let numeric = (up - down) / step;
        let reverse = gradient[i] as f64;
        let error = (reverse - numeric).abs() / numeric.abs().max(1.0);
        if error >= worst.error {
            worst = Disagreement { coordinate: i, reverse, numeric, error };
        }
    }
    Ok(worst)
}

/// Builds `x -> build(x)` over an input of `shape`, takes the gradient of <y, v> for a random v,
/// and checks every coordinate at a random x against central differences.
pub fn check_unary_graph(
    shape: &[usize],
    rng: &mut Rng,
    build: impl FnOnce(&mut TypedModel, OutletId) -> TractResult<OutletId>,
) -> TractResult<()> {
    check_graph(shape, rng, 1e-2, 2e-3, |x| x, build)
}

/// As [`check_unary_graph`], with step `h`, tolerance `tol` and a map applied to the random input
/// (to keep it inside an op's domain or away from its kinks).
pub fn check_graph(
    shape: &[usize],
    rng: &mut Rng,
    h: f32,
    tol: f64,
    domain: impl Fn(f32) -> f32,
    build: impl FnOnce(&mut TypedModel, OutletId) -> TractResult<OutletId>,
) -> TractResult<()> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(shape))?;
    let y = build(&mut model, x)?;
    model.select_output_outlets(&[y])?;
    model.set_outlet_label(y, "checked".into())?;
    let model = model.into_decluttered()?;
    let objective = Objective::Projection { tensor: "checked".into() };
    let grad = GradientModel::build(&model, &objective).map_err(|e| anyhow!("{e}"))?;
    let n: usize = shape.iter().product();
    let input: Vec<f32> = rng.vec(n).into_iter().map(&domain).collect();
    let v = rng.vec(grad.parameter_shape().iter().product());
    let worst = finite_differences(&grad, &input, &v, h, None).map_err(|e| anyhow!("{e}"))?;
    ensure!(worst.error <= tol, "gradient disagrees with finite differences: {worst:?}");
    Ok(())
}
