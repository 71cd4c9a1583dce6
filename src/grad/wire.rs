//! Helpers that wire backward nodes into the gradient graph: names, constants, masks, unbroadcast.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::MultiBroadcastTo;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};

/// The graph under construction: the forward model plus the nodes the rules add.
pub struct Backward {
    model: TypedModel,
    counter: usize,
}

impl Backward {
    pub fn new(model: TypedModel) -> Backward {
        Backward { model, counter: 0 }
    }

    pub fn into_model(self) -> TypedModel {
        self.model
    }

    pub fn model(&self) -> &TypedModel {
        &self.model
    }

    fn unique(&mut self, name: &str) -> String {
        self.counter += 1;
        format!("grad.{name}.{}", self.counter)
    }

    /// Wires `op` on `inputs` under a fresh name; returns its first output.
    pub fn wire(&mut self, name: &str, op: impl Into<Box<dyn TypedOp>>, inputs: &[OutletId]) -> TractResult<OutletId> {
        let name = self.unique(name);
        Ok(self.model.wire_node(name, op, inputs)?[0])
    }

    pub fn source(&mut self, name: &str, fact: TypedFact) -> TractResult<OutletId> {
        self.model.add_source(name, fact)
    }

    pub fn konst(&mut self, name: &str, t: Tensor) -> TractResult<OutletId> {
        let name = self.unique(name);
        self.model.add_const(name, t)
    }

    /// A scalar constant broadcastable against `like` (same rank, all dimensions 1), in its float
    /// type (tract computes some ops in f64: Pow with an integer exponent).
    pub fn scalar_like(&mut self, name: &str, value: f32, like: OutletId) -> TractResult<OutletId> {
        let fact = self.fact(like)?;
        let mut t = tensor0(value).broadcast_into_rank(fact.rank())?;
        if fact.datum_type.is_float() && fact.datum_type != f32::datum_type() {
            t = t.cast_to_dt(fact.datum_type)?.into_owned();
        }
        self.konst(name, t)
    }

    pub fn fact(&self, o: OutletId) -> TractResult<TypedFact> {
        Ok(self.model.outlet_fact(o)?.clone())
    }

    pub fn shape(&self, o: OutletId) -> TractResult<TVec<usize>> {
        let fact = self.fact(o)?;
        Ok(fact.shape.as_concrete().context("gradients need concrete shapes")?.into())
    }

    pub fn zeros_like(&mut self, name: &str, like: OutletId) -> TractResult<OutletId> {
        let shape = self.shape(like)?;
        self.konst(name, Tensor::zero::<f32>(&shape)?)
    }

    fn bin(&mut self, name: &str, op: Box<dyn BinMiniOp>, a: OutletId, b: OutletId) -> TractResult<OutletId> {
        self.wire(name, TypedBinOp(op, None), &[a, b])
    }

    pub fn add(&mut self, name: &str, a: OutletId, b: OutletId) -> TractResult<OutletId> {
        self.wire(name, math::add(), &[a, b])
    }

    pub fn sub(&mut self, name: &str, a: OutletId, b: OutletId) -> TractResult<OutletId> {
        self.wire(name, math::sub(), &[a, b])
    }

    pub fn mul(&mut self, name: &str, a: OutletId, b: OutletId) -> TractResult<OutletId> {
        self.wire(name, math::mul(), &[a, b])
    }

    pub fn div(&mut self, name: &str, a: OutletId, b: OutletId) -> TractResult<OutletId> {
        self.wire(name, math::div(), &[a, b])
    }

    pub fn neg(&mut self, name: &str, a: OutletId) -> TractResult<OutletId> {
        self.wire(name, math::neg(), &[a])
    }

    /// `a * value`, value a scalar.
    pub fn scale(&mut self, name: &str, a: OutletId, value: f32) -> TractResult<OutletId> {
        let c = self.scalar_like(name, value, a)?;
        self.mul(name, a, c)
    }

    /// 1.0 where `cmp(a, b)` holds, else 0.0 (float mask).
    pub fn mask(&mut self, name: &str, cmp: Box<dyn BinMiniOp>, a: OutletId, b: OutletId) -> TractResult<OutletId> {
        let flags = self.bin(name, cmp, a, b)?;
        self.wire(name, cast(f32::datum_type()), &[flags])
    }

    /// Sums over `axes`, keeping them as size-1 axes.
    pub fn sum_keep(&mut self, name: &str, a: OutletId, axes: &[usize]) -> TractResult<OutletId> {
        if axes.is_empty() {
            return Ok(a);
        }
        self.wire(name, Reduce::new(axes.into(), Reducer::Sum), &[a])
    }

    pub fn max_keep(&mut self, name: &str, a: OutletId, axes: &[usize]) -> TractResult<OutletId> {
        self.wire(name, Reduce::new(axes.into(), Reducer::Max), &[a])
    }

    /// Reduces a gradient of the broadcast shape back to an operand's `shape` (numpy rules).
    pub fn unbroadcast(&mut self, name: &str, grad: OutletId, shape: &[usize]) -> TractResult<OutletId> {
        let gshape = self.shape(grad)?;
        if gshape.as_slice() == shape {
            return Ok(grad);
        }
        let extra = gshape.len() - shape.len();
        let mut axes: Vec<usize> = (0..extra).collect();
        for (i, &d) in shape.iter().enumerate() {
            if d == 1 && gshape[extra + i] != 1 {
                axes.push(extra + i);
            }
        }
        let mut g = self.sum_keep(name, grad, &axes)?;
        for _ in 0..extra {
            g = self.wire(name, AxisOp::Rm(0), &[g])?;
        }
        Ok(g)
    }

    /// Broadcasts `a` to `shape`.
    pub fn broadcast(&mut self, name: &str, a: OutletId, shape: &[usize]) -> TractResult<OutletId> {
        if self.shape(a)?.as_slice() == shape {
            return Ok(a);
        }
        self.wire(name, MultiBroadcastTo { shape: shape.into() }, &[a])
    }
}
