//! Every input the loading fuzzer (fuzz/, `cargo fuzz run load`) ever crashed on, kept in
//! fuzz/regressions/, and its seed corpus: each goes through the fuzz target's path (load, classify,
//! gradient, one evaluation) and must come back as a value or an error, never a panic.

use blindspot::grad::Objective;
use blindspot::Classifier;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The fuzz target's path (fuzz/fuzz_targets/load.rs); a description of how far it got.
fn load_path(bytes: &[u8]) -> String {
    let model = match Classifier::load(bytes, None) {
        Ok(m) => m,
        Err(e) => return format!("refused: {e}"),
    };
    let x = vec![0.5f32; model.image_len()];
    let classified = model.classify(&x).map(|c| c.label);
    let evaluated = model
        .gradient(&Objective::CrossEntropy)
        .and_then(|g| g.one_hot(0).and_then(|t| g.evaluate(&x, &t)))
        .map(|e| e.objective);
    format!("loaded: classify {classified:?}, gradient {evaluated:?}")
}

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(std::path::Path::new(ROOT).join(dir))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn every_crashing_input_found_by_fuzzing_is_answered_without_a_panic() {
    // FUZZ_REPLAY=fuzz/artifacts/load replays libFuzzer's fresh findings the same way (triage)
    let found = files(&std::env::var("FUZZ_REPLAY").unwrap_or_else(|_| "fuzz/regressions".into()));
    let mut panics = vec![];
    for path in &found {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match std::panic::catch_unwind(|| load_path(&bytes)) {
            Ok(what) => println!("{name}: {what}"),
            Err(_) => panics.push(name),
        }
    }
    assert!(panics.is_empty(), "these panic: {panics:?}");
    println!("{} regression inputs", found.len());
}

#[test]
fn the_seed_corpus_loads_and_differentiates() {
    let seeds: Vec<_> = files("fuzz/corpus/load").into_iter().filter(|p| p.to_string_lossy().contains("seed-")).collect();
    assert!(seeds.len() >= 4, "the seeds are missing: python3 tools/make_fuzz_seeds.py");
    for path in seeds {
        let what = load_path(&std::fs::read(&path).unwrap());
        assert!(what.starts_with("loaded") && what.contains("gradient Ok"), "{}: {what}", path.display());
    }
}
