//! The paper's L-BFGS attack with its gradients evaluated on the GPU: the same search over c as
//! `attack::lbfgs::attack`, driven by awaiting `GpuModel::evaluate` (the page cannot block on
//! the GPU). Classifying the end point of each run (a forward pass) stays on the CPU: it happens
//! once per value of c, not once per iteration.

use super::GpuModel;
use crate::attack::lbfgs::{Ask, Options, Progress, Search};
use crate::attack::{check_input, Goal, Outcome};
use crate::{Classifier, Result};

/// Runs the attack on `x` for `goal`, with the gradients of `model`: the GPU compilation of the
/// loss graph `goal.objective()` names (its one-hot `parameter` beside it). `progress` returns
/// false to cancel (the attack then returns `Error::Cancelled`).
pub async fn attack(
    classifier: &Classifier,
    model: &GpuModel,
    parameter: &[f32],
    x: &[f32],
    goal: Goal,
    options: &Options,
    mut progress: impl FnMut(&Progress) -> bool,
) -> Result<Outcome> {
    check_input(classifier, x)?;
    let mut search = Search::new(x, goal, options);
    loop {
        match search.ask() {
            Ask::Gradient(image) => search.tell(model.evaluate(&image, parameter).await?),
            Ask::Classify(image) => search.tell_logits(classifier.classify(&image)?.logits),
            Ask::Progress(p) => {
                if !progress(&p) {
                    search.cancel();
                }
            }
            Ask::Done(outcome) => return outcome,
        }
    }
}
