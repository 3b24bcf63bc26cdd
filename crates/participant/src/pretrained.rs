//! A participant of a federation that fine-tunes a pretrained language model: its own copy
//! of the base, checked against the federation's digest, and its text, tokenised by the
//! base's own tokenizer.

use std::path::Path;
use std::sync::Arc;

use harambee_learn::{Optimizer, Split, Trainer};
use harambee_llm::{LanguageTexts, LoraTrainer, PretrainedTask, TextTokenizer, TokenCorpus};

use crate::ParticipantError;

/// The adapters' trainer on the local base, and the local text as chunks of the task's
/// context, all labelled with the federation's one class (`text`).
pub(crate) fn prepare(
    task_json: &str,
    model_dir: Option<&Path>,
    device: &str,
    optimizer: Optimizer,
    data: &Path,
) -> Result<(Arc<dyn Trainer>, Split), ParticipantError> {
    let bad = |e: harambee_llm::LlmError| ParticipantError::Model(e.to_string());
    let task: PretrainedTask = serde_json::from_str(task_json).map_err(|e| {
        ParticipantError::Model(format!(
            "the coordinator's pretrained task is malformed: {e}"
        ))
    })?;
    let Some(dir) = model_dir else {
        return Err(ParticipantError::Setup(format!(
            "this federation fine-tunes {} (digest {}): pass --model-dir with your copy of it (see docs/llm.md to fetch it)",
            task.base_name, task.base_sha256
        )));
    };
    task.validate().map_err(bad)?;
    let device = harambee_llm::device(device).map_err(bad)?;
    let (checkpoint, base) = task.load_base(dir, &device).map_err(bad)?;
    let trainer = LoraTrainer::new(Arc::new(base), task.lora.clone(), optimizer, task.context)
        .map_err(bad)?;
    let texts = LanguageTexts::load(data, None).map_err(bad)?;
    let tokenizer = TextTokenizer::load(&checkpoint.tokenizer_path()).map_err(bad)?;
    let corpus = TokenCorpus::build(&texts, &tokenizer, task.context).map_err(bad)?;
    let mut split = corpus.split;
    // The federation has one class, "text"; the languages are this member's own affair.
    for set in [&mut split.train, &mut split.test] {
        let one = Arc::make_mut(set);
        one.labels.iter_mut().for_each(|l| *l = 0);
        one.class_names = vec!["text".into()];
    }
    if split.train.is_empty() {
        return Err(ParticipantError::Model(format!(
            "{}: too little text for one chunk of {} tokens",
            data.display(),
            task.context
        )));
    }
    Ok((Arc::new(trainer), split))
}
