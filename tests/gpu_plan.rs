//! The WebGPU plan without a GPU: every shipped model's and both zoo graphs' gradient graphs,
//! compiled to kernels and run by the reference interpreter, equal tract's own evaluation; every
//! step's dispatch fits its parameter slot, WebGPU's grid limits and its buffers; the WGSL parses
//! and validates (naga, the compiler wgpu uses natively).

#[path = "support/models.rs"]
mod support_models;
use support_models::models;

use blindspot::gpu::kernels::{dispatch, grid, Family, MAX_GROUPS_PER_DIM, PARAM_WORDS, WORKGROUP};
use blindspot::gpu::plan::{Kernel, Space, View};
use blindspot::gpu::{compile, reference};
use blindspot::grad::check::Rng;
use blindspot::grad::{Evaluation, Objective};

/// The largest difference relative to max(1, |expected|) over objective, logits and gradient.
pub fn worst(ours: &Evaluation, theirs: &Evaluation) -> f32 {
    let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(1.0);
    let mut w = rel(ours.objective, theirs.objective);
    for (a, b) in ours.logits.iter().zip(&theirs.logits).chain(ours.gradient.iter().zip(&theirs.gradient)) {
        w = w.max(rel(*a, *b));
    }
    assert_eq!(ours.logits.len(), theirs.logits.len());
    assert_eq!(ours.gradient.len(), theirs.gradient.len());
    w
}

#[test]
fn reference_interpreter_equals_tract() {
    let mut rng = Rng(77);
    for (id, model) in models() {
        for objective in [Objective::CrossEntropy, Objective::Margin] {
            let grad = model.gradient(&objective).unwrap();
            let plan = compile(grad.graph()).unwrap_or_else(|e| panic!("{id}: {e}"));
            for target in [1, 6] {
                let x: Vec<f32> = (0..model.image_len()).map(|_| rng.uniform()).collect();
                let t = grad.one_hot(target).unwrap();
                let theirs = grad.evaluate(&x, &t).unwrap();
                let out = reference::run(&plan, &[&x, &t]);
                let ours = Evaluation { objective: out[0][0], logits: out[1].clone(), gradient: out[2].clone() };
                let w = worst(&ours, &theirs);
                println!("{id} {objective:?} target {target}: worst relative difference {w:.2e}");
                assert!(w <= 1e-4, "{id} {objective:?} target {target}: {w}");
            }
        }
    }
}

#[test]
fn unsupported_ops_are_named() {
    use tract_onnx::tract_core::internal::*;
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([4])).unwrap();
    let y = m.wire_node("wobble", tract_onnx::tract_core::ops::math::atan(), &[x]).unwrap();
    m.select_output_outlets(&y).unwrap();
    let e = compile(&m).unwrap_err();
    assert_eq!(e.to_string(), "cannot use this model: the WebGPU backend has no kernel for Atan (node \"wobble\")");
}

#[test]
fn intermediates_share_memory() {
    let (_, model) = models().into_iter().find(|(id, _)| id == "resnet").unwrap();
    let plan = compile(model.gradient(&Objective::CrossEntropy).unwrap().graph()).unwrap();
    println!("resnet: {} steps, work {} values ({} without reuse), weights {}", plan.steps.len(), plan.work_len, plan.work_without_reuse, plan.weights.len());
    assert!(plan.work_len * 2 < plan.work_without_reuse);
}

/// The lowest and highest element a kernel touches through a view: `offset + sum(i_d s_d)` over
/// the index ranges `dims` (extent, stride).
fn reach(offset: usize, dims: impl IntoIterator<Item = (usize, isize)>) -> (i64, i64) {
    let (mut lo, mut hi) = (offset as i64, offset as i64);
    for (extent, stride) in dims {
        let span = (extent.max(1) as i64 - 1) * stride as i64;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    (lo, hi)
}

/// The index ranges a kernel walks a view along: a map's and an einsum's operands along the
/// output's axes (right-aligned, as the kernels pad them), an einsum's along its summed axes too;
/// every other operand along its own shape.
fn walked(kernel: &Kernel, view: &View) -> Vec<(usize, isize)> {
    let out = kernel.output();
    let aligned = |v: &View| -> Vec<(usize, isize)> {
        let extra = out.shape.len() - v.strides.len();
        out.shape[extra..].iter().copied().zip(v.strides.iter().copied()).collect()
    };
    match kernel {
        Kernel::Map { .. } if view != out => aligned(view),
        Kernel::EinSum { a, sum_shape, sum_strides, .. } if view != out => {
            let side = if view == a { 0 } else { 1 };
            aligned(view).into_iter().chain(sum_shape.iter().copied().zip(sum_strides[side].iter().copied())).collect()
        }
        _ => view.shape.iter().copied().zip(view.strides.iter().copied()).collect(),
    }
}

#[test]
fn every_dispatch_fits_its_parameter_slot_the_grid_limits_and_its_buffers() {
    let mut steps = 0;
    let mut largest = (0, String::new());
    for (id, model) in models() {
        for objective in [Objective::CrossEntropy, Objective::Margin] {
            let plan = compile(model.gradient(&objective).unwrap().graph()).unwrap();
            // offsets are i32 in the kernels
            assert!(plan.weights.len() < i32::MAX as usize && plan.work_len < i32::MAX as usize, "{id}");
            for step in &plan.steps {
                let at = format!("{id} {objective:?} step {:?}", step.node);
                let d = dispatch(&step.kernel);
                assert!(d.params.len() <= PARAM_WORDS, "{at}: {} parameter words", d.params.len());
                assert!(d.family.entry_points().contains(&d.entry), "{at}: {} not in {:?}", d.entry, d.family);
                let threads = step.kernel.threads();
                assert_eq!(d.params[0] as usize, threads, "{at}: word 0 is the thread count");
                let (x, y) = (d.groups.0 as usize, d.groups.1 as usize);
                assert!((1..=MAX_GROUPS_PER_DIM).contains(&x) && (1..=MAX_GROUPS_PER_DIM).contains(&y), "{at}: grid {x} x {y}");
                // every thread covered, at most one partial row of workgroups, the index a u32
                let needed = threads.div_ceil(WORKGROUP).max(1);
                assert!(x * y >= needed && x * y < needed + x, "{at}: grid {x} x {y} for {threads} threads");
                assert!(x * y * WORKGROUP <= u32::MAX as usize, "{at}");
                if threads > largest.0 {
                    largest = (threads, at.clone());
                }
                for view in std::iter::once(step.kernel.output()).chain(step.kernel.inputs()) {
                    let len = match view.space {
                        Space::Weights => plan.weights.len(),
                        Space::Work => plan.work_len,
                    };
                    let (lo, hi) = reach(view.offset, walked(&step.kernel, view));
                    assert!(lo >= 0 && hi < len as i64, "{at}: a {:?} view reaches [{lo}, {hi}] of {len}", view.space);
                }
                steps += 1;
            }
        }
    }
    println!("{steps} steps checked; the largest runs {} threads ({})", largest.0, largest.1);
}

/// The grid for thread counts around the per-dimension limit.
#[test]
fn the_grid_spills_into_y_past_65535_workgroups() {
    assert_eq!(grid(0), (1, 1));
    assert_eq!(grid(1), (1, 1));
    assert_eq!(grid(64), (1, 1));
    assert_eq!(grid(65), (2, 1));
    assert_eq!(grid(64 * 65535), (65535, 1));
    assert_eq!(grid(64 * 65535 + 1), (65535, 2));
    assert_eq!(grid(64 * 65535 * 3), (65535, 3));
    // 2^32 - 1 threads, the most a u32 index can name
    let (x, y) = grid(u32::MAX as usize);
    assert_eq!((x, y), (65535, 1025));
    assert!(x as usize * y as usize * WORKGROUP > u32::MAX as usize - 64);
}

/// Every .wgsl file, as the device compiles it (the shared part in front of each family's own),
/// parses and validates with naga; its compute entry points are the ones dispatched, with
/// workgroups of WORKGROUP threads, and its bindings are the device's: weights read-only storage
/// (0), work read-write storage (1), one PARAM_WORDS-word uniform slot (2).
#[test]
fn every_wgsl_kernel_parses_and_validates() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    use naga::{AddressSpace, ShaderStage, StorageAccess};
    let dir = format!("{}/src/gpu/kernels", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["common.wgsl", "conv.wgsl", "einsum.wgsl", "map.wgsl", "pool.wgsl", "reduce.wgsl"]);
    for family in Family::ALL {
        let source = family.source();
        let own = format!("{family:?}").to_lowercase() + ".wgsl";
        assert!(source.ends_with(&std::fs::read_to_string(format!("{dir}/{own}")).unwrap()), "{own}");
        let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{own}:\n{}", e.emit_to_string(&source)));
        // WebGPU's baseline: no optional capability
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{own}:\n{}", e.emit_to_string(&source)));
        let mut entries: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        entries.sort();
        let mut expected = family.entry_points().to_vec();
        expected.sort();
        assert_eq!(entries, expected, "{own}");
        for e in &module.entry_points {
            assert_eq!(e.stage, ShaderStage::Compute, "{own} {}", e.name);
            assert_eq!(e.workgroup_size, [WORKGROUP as u32, 1, 1], "{own} {}", e.name);
        }
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let mut bindings: Vec<(u32, AddressSpace, u32)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.binding.as_ref().map(|b| {
                assert_eq!(b.group, 0, "{own}");
                (b.binding, g.space, layouter[g.ty].size)
            }))
            .collect();
        bindings.sort_by_key(|b| b.0);
        assert_eq!(bindings.len(), 3, "{own}: {bindings:?}");
        assert_eq!(bindings[0].1, AddressSpace::Storage { access: StorageAccess::LOAD }, "{own}: weights");
        assert_eq!(bindings[1].1, AddressSpace::Storage { access: StorageAccess::LOAD | StorageAccess::STORE }, "{own}: work");
        assert_eq!((bindings[2].1, bindings[2].2), (AddressSpace::Uniform, (PARAM_WORDS * 4) as u32), "{own}: parameters");
    }
}
