//! Small valid inputs for every target, built here so that each case parses in microseconds
//! (a million cases per target must fit minutes, not hours) and so the harness needs no files.

use super::bundle::Bundle;
use ilrec::autograd::ParamId;
use ilrec::model::config::LlamaConfig;
use ilrec::model::llama::Llama;
use ilrec::model::weights::save_params;
use serde_json::{json, Value};
use std::path::Path;

/// A Llama config small enough that a whole model is a few kilobytes.
pub fn tiny_config_json(tied: bool) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 4,
        "vocab_size": 12,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "hidden_act": "silu",
        "torch_dtype": "float32"
    })
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("a serde_json::Value always serialises")
}

/// config.json alone (both tied and untied, and a Qwen2 one with biases and a sliding window).
pub fn config_seeds() -> Vec<Bundle> {
    let mut qwen = tiny_config_json(true);
    qwen["model_type"] = json!("qwen2");
    qwen["architectures"] = json!(["Qwen2ForCausalLM"]);
    qwen["use_sliding_window"] = json!(true);
    qwen["sliding_window"] = json!(32);
    [tiny_config_json(true), tiny_config_json(false), qwen]
        .iter()
        .map(|v| Bundle::single("config.json", json_bytes(v)))
        .collect()
}

/// A saved tiny model (config.json + model.safetensors), and the same weights in two shards
/// with a model.safetensors.index.json.
pub fn safetensors_seeds(scratch: &Path) -> Vec<Bundle> {
    let config = LlamaConfig::from_json(&tiny_config_json(false), "<seed>").expect("seed config");
    let model = Llama::from_config(config, 1).expect("seed model");
    let dir = scratch.join("seed-safetensors");
    model.save(&dir).expect("seed model saves");
    let single = Bundle {
        files: ["config.json", "model.safetensors"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    std::fs::read(dir.join(n)).expect("seed file"),
                )
            })
            .collect(),
    };
    vec![single, sharded(&model, &dir)]
}

/// The model's tensors split over two shard files plus the index that names them.
fn sharded(model: &Llama, dir: &Path) -> Bundle {
    let ids: Vec<ParamId> = model.params.ids().collect();
    let (first, second) = ids.split_at(ids.len() / 2);
    let mut weight_map = serde_json::Map::new();
    let mut files = vec![(
        "config.json".to_string(),
        std::fs::read(dir.join("config.json")).expect("seed config file"),
    )];
    for (k, part) in [first, second].iter().enumerate() {
        let name = format!("model-0000{}-of-00002.safetensors", k + 1);
        save_params(&model.params, part, dir.join(&name)).expect("seed shard saves");
        for &id in part.iter() {
            weight_map.insert(model.params.name(id).to_string(), json!(name));
        }
        files.push((
            name.clone(),
            std::fs::read(dir.join(&name)).expect("seed shard"),
        ));
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    files.push(("model.safetensors.index.json".into(), json_bytes(&index)));
    Bundle { files }
}

/// GPT-2's byte-to-character map (printable bytes as themselves, the rest shifted past 255).
fn byte_level_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("byte is a char")
            } else {
                next += 1;
                char::from_u32(next - 1).expect("shifted byte is a char")
            }
        })
        .collect()
}

/// A byte-level BPE tokenizer.json: the 256 byte symbols, a few merges, two added tokens.
pub fn tokenizer_seeds() -> Vec<Bundle> {
    let mut vocab = serde_json::Map::new();
    for (id, c) in byte_level_chars().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(id));
    }
    let merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w"), ("o", "r")];
    for (k, (a, b)) in merges.iter().enumerate() {
        vocab.insert(format!("{a}{b}"), json!(256 + k));
    }
    let merge_list: Vec<Value> = merges
        .iter()
        .map(|(a, b)| json!(format!("{a} {b}")))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tokenizer = json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 261, "content": "<|endoftext|>", "special": true, "normalized": false, "lstrip": false, "rstrip": false, "single_word": false},
            {"id": 262, "content": "<a_1>", "special": false, "normalized": true, "lstrip": false, "rstrip": false, "single_word": false}
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]},
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merge_list}
    });
    let mut plain = tokenizer.clone();
    plain["normalizer"] = Value::Null;
    plain["pre_tokenizer"] = byte_level;
    vec![
        Bundle::single("tokenizer.json", json_bytes(&tokenizer)),
        Bundle::single("tokenizer.json", json_bytes(&plain)),
    ]
}

/// A MovieLens folder: 4 users x 5 movies, every user rated every movie (so 5-core keeps all).
pub fn movielens_seeds() -> Vec<Bundle> {
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    for user in 1..=6 {
        for movie in 1..=6 {
            ratings += &format!(
                "{user},{movie},{}.0,{}\n",
                1 + (user + movie) % 5,
                1000 + user * 10 + movie
            );
        }
    }
    let movies = "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,\"Heat, The (1995)\",Action\n\
                  3,Casino (1995),Crime\n4,Babe (1995),Children\n5,Sabrina (1995),Romance\n6,Nixon (1995),Drama\n";
    vec![Bundle {
        files: vec![
            ("ratings.csv".into(), ratings.into_bytes()),
            ("movies.csv".into(), movies.as_bytes().to_vec()),
        ],
    }]
}

/// A RecBole atomic pair `fz.inter` + `fz.item` with typed headers.
pub fn recbole_seeds() -> Vec<Bundle> {
    let mut inter = String::from("user_id:token\titem_id:token\trating:float\ttimestamp:float\n");
    for user in 1..=6 {
        for item in 1..=6 {
            inter += &format!(
                "u{user}\ti{item}\t{}\t{}\n",
                1 + (user * item) % 5,
                500 + user * 7 + item
            );
        }
    }
    let mut item = String::from("item_id:token\ttitle:token_seq\tcategories:token_seq\n");
    for i in 1..=6 {
        item += &format!("i{i}\tItem number {i}\tOffice Pens\n");
    }
    let plain = Bundle {
        files: vec![
            ("fz.inter".into(), inter.clone().into_bytes()),
            ("fz.item".into(), item.into_bytes()),
        ],
    };
    vec![plain, ml100k_seed(&inter)]
}

/// RecBole's ml-100k layout: `movie_title`, `release_year`, `class`, a `.user` file, a quoted
/// title and CRLF line ends.
fn ml100k_seed(inter: &str) -> Bundle {
    let mut item = String::from(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\r\n",
    );
    for i in 1..=6 {
        item += &format!("i{i}\t\"Film \"\"{i}\"\"\tx\"\t199{i}\tComedy Drama\r\n");
    }
    let mut user = String::from("user_id:token\tage:token\tgender:token\n");
    for u in 1..=6 {
        user += &format!("u{u}\t{}\tF\n", 20 + u);
    }
    Bundle {
        files: vec![
            ("ml.inter".into(), inter.replace('\n', "\r\n").into_bytes()),
            ("ml.item".into(), item.into_bytes()),
            ("ml.user".into(), user.into_bytes()),
        ],
    }
}

/// The raw item ids the `sids` target checks a `sids.json` against.
pub fn sid_item_ids() -> Vec<String> {
    (1..=6).map(|i| format!("i{i}")).collect()
}

/// `sids.json` (LC-Rec's index shape) with its item-id side file, written by the library.
pub fn sids_seeds(scratch: &Path) -> Vec<Bundle> {
    let codes: Vec<Vec<u32>> = (0..6u32).map(|i| vec![i % 2, i / 2, i]).collect();
    std::fs::create_dir_all(scratch).expect("seed folder");
    let path = scratch.join("sids.json");
    ilrec::sid::write_sids(&path, &codes, &sid_item_ids()).expect("seed SIDs write");
    let side = ilrec::sid::index_json::item_ids_path(&path);
    let read = |p: &Path| std::fs::read(p).expect("seed SID file");
    let with_side = Bundle {
        files: vec![
            ("sids.json".into(), read(&path)),
            ("sids.item_ids.json".into(), read(&side)),
        ],
    };
    vec![with_side, Bundle::single("sids.json", read(&path))]
}

/// A stage checkpoint as the trainer writes it (`ckpt/<stage>/`): the model folder, the AdamW
/// moments after one step, and `state.json` with the step and log length.
pub fn resume_seeds(scratch: &Path) -> Vec<Bundle> {
    let config = LlamaConfig::from_json(&tiny_config_json(false), "<seed>").expect("seed config");
    let model = Llama::from_config(config, 3).expect("seed model");
    let stage = resume_stage_config();
    let mut state = ilrec::ilrec::trainer::StageState::start(model, &stage);
    for id in state.model.params.ids().collect::<Vec<_>>() {
        if let Some(g) = state.model.params.grad_mut(id) {
            g.data_mut()
                .expect("f32 gradient")
                .iter_mut()
                .for_each(|x| *x = 0.01);
        }
    }
    state
        .optimizer
        .step(&mut state.model.params, 1e-3)
        .expect("seed step");
    state.step = 1;
    let dir = scratch.join("seed-resume");
    let ckpt = ilrec::ilrec::trainer::StageCheckpoint::new(dir.clone());
    ckpt.save(&state, 7, false).expect("seed checkpoint saves");
    let files = [
        "state.json",
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
    ]
    .iter()
    .map(|n| {
        (
            n.to_string(),
            std::fs::read(dir.join(n)).expect("seed file"),
        )
    })
    .collect();
    vec![Bundle { files }]
}

/// The stage a fuzzed checkpoint is loaded for (its settings only shape the optimizer).
pub fn resume_stage_config() -> ilrec::ilrec::trainer::StageConfig {
    ilrec::ilrec::trainer::StageConfig {
        name: "warmup".into(),
        steps: 10,
        batch: 2,
        lr: 1e-3,
        warmup_steps: 1,
        clip_norm: 1.0,
        weight_decay: 0.01,
        schedule: ilrec::ilrec::schedule::Schedule::Joint,
        step: ilrec::ilrec::gradients::StepConfig::sft(),
        order_seed: 0,
        checkpoint_every: 1,
        validate_at: Vec::new(),
    }
}
