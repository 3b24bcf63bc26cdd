//! Our transformer against Hugging Face `transformers` on tiny random checkpoints of each
//! architecture (written by `scripts/make_llm_fixtures.py`): the same logits to 1e-4, with
//! and without a PEFT LoRA adapter.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use harambee_learn::Optimizer;
use harambee_llm::{Checkpoint, LoraTrainer, TextTokenizer, device, load_base, peft};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Reference {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    logits: Vec<Vec<f32>>,
    adapter_logits: Option<Vec<Vec<f32>>>,
}

fn reference(dir: &Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let flat = |key: &str| -> Option<Vec<Vec<f32>>> {
        v.get(key)?
            .as_array()?
            .iter()
            .map(|seq| {
                seq.as_array().map(|rows| {
                    rows.iter()
                        .flat_map(|r| {
                            r.as_array()
                                .expect("rows")
                                .iter()
                                .map(|x| x.as_f64().expect("float") as f32)
                        })
                        .collect()
                })
            })
            .collect()
    };
    Reference {
        texts: serde_json::from_value(v["texts"].clone()).expect("texts"),
        input_ids: serde_json::from_value(v["input_ids"].clone()).expect("ids"),
        logits: flat("logits").expect("logits"),
        adapter_logits: flat("adapter_logits"),
    }
}

fn max_difference(ours: &[Vec<f32>], theirs: &[Vec<f32>]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "logit counts differ");
            a.iter().zip(b).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn check(name: &str) {
    let dir = fixture(name);
    let checkpoint = Checkpoint::open(&dir).expect("opens");
    let reference = reference(&dir);
    let tokenizer = TextTokenizer::load(&checkpoint.tokenizer_path()).expect("tokenizer");
    for (text, ids) in reference.texts.iter().zip(&reference.input_ids) {
        assert_eq!(
            &tokenizer.encode(text).expect("encodes").0,
            ids,
            "{name}: token ids of {text:?}"
        );
    }
    let base = Arc::new(load_base(&checkpoint, &device("cpu").expect("cpu")).expect("loads"));
    let context = checkpoint.config().max_position_embeddings;
    let adam = Optimizer::AdamW { weight_decay: 0.0 };
    let plain = LoraTrainer::new(
        base.clone(),
        harambee_llm::LoraSettings::new(4),
        adam,
        context,
    )
    .expect("trainer");
    let ours = plain.logits(None, &reference.input_ids).expect("forward");
    let d = max_difference(&ours, &reference.logits);
    assert!(d < 1e-4, "{name}: logits differ from transformers' by {d}");
    if let Some(expected) = &reference.adapter_logits {
        let (settings, params) =
            peft::read_adapter(&dir.join("adapter"), checkpoint.config()).expect("adapter");
        let adapted = LoraTrainer::new(base, settings, adam, context).expect("trainer");
        let ours = adapted
            .logits(Some(&params), &reference.input_ids)
            .expect("forward");
        let d = max_difference(&ours, expected);
        assert!(d < 1e-4, "{name}: adapted logits differ from PEFT's by {d}");
        let base_only = max_difference(&ours, &reference.logits);
        assert!(
            base_only > 1e-3,
            "{name}: the adapter should change the logits"
        );
    }
}

#[test]
fn llama_matches_transformers() {
    check("llama");
}

#[test]
fn smollm2_matches_transformers() {
    check("smollm2");
}

#[test]
fn sharded_qwen2_matches_transformers() {
    check("qwen2");
}
