//! The objectives a gradient is taken of: cross-entropy, logit margin, projection of a tensor.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::logic::comp_eq;
use tract_onnx::tract_core::ops::math;

use super::wire::Backward;
use crate::error::Error;

/// What the gradient is of. `ce` and `margin` take a one-hot target (the logits' shape) as
/// parameter; `Projection` takes the direction v (the named tensor's shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Objective {
    /// Cross-entropy of softmax(logits) against the target: logsumexp(z) - z_target.
    CrossEntropy,
    /// Target logit minus the best other logit: z_target - max_{j != target} z_j.
    Margin,
    /// <phi(x), v> for the tensor named `tensor` (a node name, or `node:slot`).
    Projection { tensor: String },
}

/// The objective wired: its scalar output and the gradient seed at the outlet it is taken of.
pub struct Seeded {
    pub objective: OutletId,
    pub seed_at: OutletId,
    pub seed: OutletId,
}

impl Objective {
    pub fn parse(name: &str) -> crate::Result<Objective> {
        match name {
            "ce" => Ok(Objective::CrossEntropy),
            "margin" => Ok(Objective::Margin),
            other => Err(Error::Input(format!("unknown objective \"{other}\": use ce or margin"))),
        }
    }

    pub(crate) fn wire(&self, b: &mut Backward, logits: OutletId) -> TractResult<Seeded> {
        match self {
            Objective::CrossEntropy => cross_entropy(b, logits),
            Objective::Margin => margin(b, logits),
            Objective::Projection { tensor } => projection(b, tensor),
        }
    }
}

fn all_axes(b: &Backward, o: OutletId) -> TractResult<Vec<usize>> {
    Ok((0..b.fact(o)?.rank()).collect())
}

/// The axes of one image's class scores: all but the batch axis (the first) of a rank-2 or
/// higher output, so that a batch's objective is its images' objectives summed.
fn class_axes(b: &Backward, o: OutletId) -> TractResult<Vec<usize>> {
    let rank = b.fact(o)?.rank();
    Ok(if rank >= 2 { (1..rank).collect() } else { (0..rank).collect() })
}

/// A scalar objective as a rank-1 tensor of one value: the per-image values (kept axes) summed
/// over the batch.
fn to_scalar_output(b: &mut Backward, name: &str, keep: OutletId) -> TractResult<OutletId> {
    let rank = b.fact(keep)?.rank();
    let keep = if rank >= 1 && b.shape(keep)?[0] > 1 { b.sum_keep(name, keep, &[0])? } else { keep };
    let mut o = keep;
    for _ in 1..rank {
        o = b.wire(name, AxisOp::Rm(0), &[o])?;
    }
    if rank == 0 {
        o = b.wire(name, AxisOp::Add(0), &[o])?;
    }
    Ok(o)
}

fn parameter_like(b: &mut Backward, like: OutletId) -> TractResult<OutletId> {
    let fact = b.fact(like)?;
    b.source("parameter", f32::fact(fact.shape.as_concrete().context("concrete shape")?))
}

/// ce = logsumexp(z) - <z, t> per image, summed over a batch; d ce / dz = softmax(z) - t.
fn cross_entropy(b: &mut Backward, z: OutletId) -> TractResult<Seeded> {
    let t = parameter_like(b, z)?;
    let axes = class_axes(b, z)?;
    let m = b.max_keep("ce.max", z, &axes)?;
    let shifted = b.sub("ce.shift", z, m)?;
    let e = b.wire("ce.exp", math::exp(), &[shifted])?;
    let s = b.sum_keep("ce.sum", e, &axes)?;
    let log_s = b.wire("ce.ln", math::ln(), &[s])?;
    let lse = b.add("ce.lse", log_s, m)?;
    let zt = b.mul("ce.zt", z, t)?;
    let picked = b.sum_keep("ce.picked", zt, &axes)?;
    let ce = b.sub("ce", lse, picked)?;
    let objective = to_scalar_output(b, "ce.out", ce)?;
    let softmax = b.div("ce.softmax", e, s)?;
    let seed = b.sub("ce.seed", softmax, t)?;
    Ok(Seeded { objective, seed_at: z, seed })
}

/// margin = <z, t> - max(z - BIG t) per image, summed over a batch; d margin / dz = t - [z - BIG t == its max].
fn margin(b: &mut Backward, z: OutletId) -> TractResult<Seeded> {
    let t = parameter_like(b, z)?;
    let axes = class_axes(b, z)?;
    let zt = b.mul("margin.zt", z, t)?;
    let picked = b.sum_keep("margin.picked", zt, &axes)?;
    let big = b.scale("margin.big", t, 1e30)?;
    let others = b.sub("margin.others", z, big)?;
    let best = b.max_keep("margin.best", others, &axes)?;
    let value = b.sub("margin", picked, best)?;
    let objective = to_scalar_output(b, "margin.out", value)?;
    let at_best = b.mask("margin.argmax", comp_eq(), others, best)?;
    let seed = b.sub("margin.seed", t, at_best)?;
    Ok(Seeded { objective, seed_at: z, seed })
}

/// <phi, v>; d/dphi = v.
fn projection(b: &mut Backward, tensor: &str) -> TractResult<Seeded> {
    if let Some(phi) = b.model().find_outlet_label(tensor) {
        return projection_at(b, phi);
    }
    let (node, slot) = match tensor.rsplit_once(':') {
        Some((n, s)) if s.parse::<usize>().is_ok() => (n, s.parse().unwrap()),
        _ => (tensor, 0),
    };
    let id = b
        .model()
        .node_id_by_name(node)
        .map_err(|_| Error::Input(format!("the graph has no tensor named \"{tensor}\": {}", crate::units::PICK_A_TENSOR)))?;
    projection_at(b, OutletId::new(id, slot))
}

fn projection_at(b: &mut Backward, phi: OutletId) -> TractResult<Seeded> {
    let v = parameter_like(b, phi)?;
    let axes = all_axes(b, phi)?;
    let prod = b.mul("projection.prod", phi, v)?;
    let sum = b.sum_keep("projection", prod, &axes)?;
    let objective = to_scalar_output(b, "projection.out", sum)?;
    Ok(Seeded { objective, seed_at: phi, seed: v })
}
