//! Fuzzes the loading path a dropped model takes: bytes -> model -> gradient graph -> one
//! evaluation. Any panic, abort or runaway allocation is a finding (see fuzz/README.md).
#![no_main]

use blindspot::grad::Objective;
use blindspot::Classifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Classifier::load(data, None) else { return };
    let x = vec![0.5f32; model.image_len()];
    let _ = model.classify(&x);
    if let Ok(gradient) = model.gradient(&Objective::CrossEntropy) {
        if let Ok(target) = gradient.one_hot(0) {
            let _ = gradient.evaluate(&x, &target);
        }
    }
});
