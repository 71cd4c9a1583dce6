//! Backward ops tract lacks a fast form of: max-pool routing and the ReLU gate. Plain tract ops,
//! wired into gradient graphs like any other; each is a tight loop over contiguous memory.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::PoolSpec;

/// dx of an N-D channels-first max pool (1-D, 2-D, 3-D): each window's dy goes to the window's first maximum of x
/// (the element tract's MaxPool picks); overlapping windows add up.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct MaxPoolBackward {
    pub pool_spec: PoolSpec,
}

impl Op for MaxPoolBackward {
    fn name(&self) -> StaticName {
        "MaxPoolBackward".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPoolBackward {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, dy) = args_2!(inputs);
        // f64 too: gradient checks run the whole graph in f64
        let dx = match x.datum_type() {
            DatumType::F64 => self.route::<f64>(&x, &dy)?,
            _ => self.route::<f32>(&x, &dy)?,
        };
        Ok(tvec!(dx.into_tvalue()))
    }
}

impl MaxPoolBackward {
    fn route<T: Datum + Copy + PartialOrd + tract_num_traits::Zero + std::ops::AddAssign>(&self, x: &Tensor, dy: &Tensor) -> TractResult<Tensor> {
        let x = x.to_plain_array_view::<T>()?;
        let dy = dy.to_plain_array_view::<T>()?;
        let (xs, ys) = (x.shape().to_vec(), dy.shape().to_vec());
        let kernel = &self.pool_spec.kernel_shape;
        ensure!(
            xs.len() == ys.len() && xs.len() == kernel.len() + 2,
            "MaxPoolBackward takes N, C and {} spatial axes, not {xs:?} and {ys:?}",
            kernel.len()
        );
        let (space, out_space) = (&xs[2..], &ys[2..]);
        let padding = self.pool_spec.computed_padding(space);
        let (strides, dilations) = (self.pool_spec.strides(), self.pool_spec.dilations());
        let x = x.as_slice().context("contiguous x")?;
        let dy = dy.as_slice().context("contiguous dy")?;
        let mut dx = vec![T::zero(); x.len()];
        let (plane_in, plane_out): (usize, usize) = (space.iter().product(), out_space.iter().product());
        let taps: usize = kernel.iter().product();
        let rank = space.len();
        // the row-major index of `flat` in `dims`, last axis first
        let unravel = |mut flat: usize, dims: &[usize], into: &mut [usize]| {
            for axis in (0..dims.len()).rev() {
                into[axis] = flat % dims[axis];
                flat /= dims[axis];
            }
        };
        let (mut o_at, mut t_at) = (vec![0; rank], vec![0; rank]);
        for plane in 0..xs[0] * xs[1] {
            let xp = &x[plane * plane_in..][..plane_in];
            let dxp = &mut dx[plane * plane_in..][..plane_in];
            let dyp = &dy[plane * plane_out..][..plane_out];
            for (o, &g) in dyp.iter().enumerate() {
                unravel(o, out_space, &mut o_at);
                let mut best: Option<(usize, T)> = None;
                // taps in row-major order, the first maximum kept: the element tract's MaxPool picks
                'taps: for t in 0..taps {
                    unravel(t, kernel, &mut t_at);
                    let mut at = 0;
                    for axis in 0..rank {
                        let r = (o_at[axis] * strides[axis] + t_at[axis] * dilations[axis]) as isize
                            - padding[axis].pad_before as isize;
                        if r < 0 || r >= space[axis] as isize {
                            continue 'taps;
                        }
                        at = at * space[axis] + r as usize;
                    }
                    if best.is_none_or(|(_, v)| xp[at] > v) {
                        best = Some((at, xp[at]));
                    }
                }
                if let Some((at, _)) = best {
                    dxp[at] += g;
                }
            }
        }
        Tensor::from_shape(&xs, &dx)
    }
}

impl TypedOp for MaxPoolBackward {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// dy where y > 0, else 0: the gradient through y = max(x, 0), read from y.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct ReluBackward;

impl Op for ReluBackward {
    fn name(&self) -> StaticName {
        "ReluBackward".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ReluBackward {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (y, dy) = args_2!(inputs);
        let mut dx = dy.into_tensor();
        match y.datum_type() {
            DatumType::F64 => gate::<f64>(&y, &mut dx)?,
            _ => gate::<f32>(&y, &mut dx)?,
        }
        Ok(tvec!(dx.into_tvalue()))
    }
}

fn gate<T: Datum + Copy + PartialOrd + tract_num_traits::Zero>(y: &Tensor, dx: &mut Tensor) -> TractResult<()> {
    let y = y.to_plain_array_view::<T>()?;
    let mut plain = dx.try_as_plain_ram_mut()?;
    for (d, y) in plain.as_slice_mut::<T>()?.iter_mut().zip(y.iter()) {
        if *y <= T::zero() {
            *d = T::zero();
        }
    }
    Ok(())
}

impl TypedOp for ReluBackward {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].shape == inputs[1].shape, "ReluBackward wants y and dy of one shape");
        Ok(tvec!(inputs[1].without_value()))
    }

    as_op!();
}
