//! SID files and embedding sources: sids.json written then read back gives the same codes and
//! the same item trie; every kind of bad sids.json or embeddings file is a one-line error
//! naming the file and the item; the LLM embeddings (mean-pooled final-norm states, batched
//! with padding) agree with an independent per-text computation on the tiny-llama fixture.

mod common;

use common::fixture;
use ilrec::model::llama::{BatchInput, Llama};
use ilrec::rec::ItemTrie;
use ilrec::rng::Rng;
use ilrec::sid::embeddings::{
    llm_item_embeddings, llm_item_embeddings_cached, load_embeddings_file, partial_path,
    save_embeddings, PARTIAL_EVERY,
};
use ilrec::sid::index_json::item_ids_path;
use ilrec::sid::{read_sids, write_sids, SidVocab};
use ilrec::tokenizer::Tokenizer;
use ilrec::{Tape, Tensor};
use std::path::{Path, PathBuf};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-sid-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn raw_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item{}", 100 + i)).collect()
}

fn random_unique_sids(n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<Vec<u32>> = Vec::new();
    while out.len() < n {
        let c = vec![
            rng.below(6) as u32,
            rng.below(6) as u32,
            rng.below(6) as u32,
        ];
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn trie_of(codes: &[Vec<u32>]) -> ItemTrie {
    let mut tok = Tokenizer::from_file(fixture("tokenizers/smollm2/tokenizer.json")).unwrap();
    let vocab = SidVocab::register(&mut tok, &ilrec::sid::codes_per_level(codes)).unwrap();
    ItemTrie::build(&vocab.item_sequences(codes).unwrap(), 2).unwrap()
}

#[test]
fn sids_json_round_trips_codes_and_trie() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("sids.json");
    let (codes, raw) = (random_unique_sids(60, 1), raw_ids(60));
    write_sids(&path, &codes, &raw).unwrap();
    // LC-Rec's shape, checked with serde_json independently of our reader.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        v["7"],
        serde_json::json!([
            format!("<a_{}>", codes[7][0]),
            format!("<b_{}>", codes[7][1]),
            format!("<c_{}>", codes[7][2])
        ])
    );
    let back = read_sids(&path, &raw).unwrap();
    assert_eq!(back, codes);
    let (a, b) = (trie_of(&codes), trie_of(&back));
    assert_eq!(a.items_dfs(), b.items_dfs());
    assert_eq!(a.num_nodes(), b.num_nodes());
    for item in 0..60u32 {
        assert_eq!(a.item_seq(item), b.item_seq(item));
        let seq = a.item_seq(item);
        for t in 0..seq.len() {
            assert_eq!(a.allowed_next(&seq[..t]), b.allowed_next(&seq[..t]));
        }
    }
    // Through the side file, the keys follow the raw ids even when the data set's order differs.
    let mut reordered = raw.clone();
    reordered.reverse();
    let back = read_sids(&path, &reordered).unwrap();
    assert_eq!(
        back[59], codes[0],
        "item with raw id {} is dense item 59 now",
        raw[0]
    );
    // Without the side file, keys are dense indices.
    std::fs::remove_file(item_ids_path(&path)).unwrap();
    assert_eq!(read_sids(&path, &raw).unwrap(), codes);
}

/// The error of reading `text` as sids.json for 3 items: one line naming the file.
fn sids_error(tag: &str, text: &str) -> String {
    let dir = temp_dir(tag);
    let path = dir.join("sids.json");
    std::fs::write(&path, text).unwrap();
    let err = read_sids(&path, &raw_ids(3)).expect_err(tag).to_string();
    assert!(
        !err.contains('\n') && err.contains("sids.json"),
        "{tag}: {err}"
    );
    err
}

#[test]
fn bad_sids_files_are_one_line_errors_naming_the_item() {
    let ok = |k: &str, a: u32| format!("\"{k}\": [\"<a_{a}>\", \"<b_0>\"]");
    let missing = sids_error("missing", &format!("{{{}, {}}}", ok("0", 1), ok("1", 2)));
    assert!(
        missing.contains("item 2") && missing.contains("item102") && missing.contains("no SID"),
        "{missing}"
    );
    let repeated = sids_error(
        "repeated",
        &format!("{{{}, {}, {}}}", ok("0", 1), ok("1", 2), ok("2", 1)),
    );
    assert!(
        repeated.contains("items 0 and 2") && repeated.contains("<a_1><b_0>"),
        "{repeated}"
    );
    let unknown = sids_error(
        "unknown",
        &format!(
            "{{{}, {}, {}, {}}}",
            ok("0", 1),
            ok("1", 2),
            ok("2", 3),
            ok("7", 4)
        ),
    );
    assert!(
        unknown.contains("\"7\"") && unknown.contains("not an item"),
        "{unknown}"
    );
    let letter = sids_error(
        "letter",
        &format!(
            "{{{}, {}, \"2\": [\"<a_1>\", \"<c_0>\"]}}",
            ok("0", 1),
            ok("1", 2)
        ),
    );
    assert!(
        letter.contains("item \"2\"") && letter.contains("<c_0>"),
        "{letter}"
    );
    let levels = sids_error(
        "levels",
        &format!("{{{}, {}, \"2\": [\"<a_5>\"]}}", ok("0", 1), ok("1", 2)),
    );
    assert!(
        levels.contains("item \"2\"") && levels.contains("levels"),
        "{levels}"
    );
    let not_json = sids_error("notjson", "[1, 2");
    assert!(not_json.contains("JSON"), "{not_json}");
}

/// One tensor to write: its name and shape (the values are zeros).
type NamedShape<'a> = (&'a str, Vec<usize>);

fn write_tensors(path: &Path, tensors: &[NamedShape]) {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s)| {
            (
                n.to_string(),
                s.clone(),
                vec![0u8; 4 * s.iter().product::<usize>()],
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

#[test]
fn bad_embeddings_files_are_one_line_errors() {
    let dir = temp_dir("emb");
    let cases: [(&str, Vec<NamedShape>, &str); 3] = [
        (
            "count",
            vec![("e", vec![9, 4])],
            "9 rows, the data set has 10 items",
        ),
        ("rank", vec![("e", vec![10, 4, 2])], "expected 2-D"),
        (
            "two",
            vec![("a", vec![10, 4]), ("b", vec![10, 4])],
            "exactly one tensor",
        ),
    ];
    for (tag, tensors, want) in cases {
        let path = dir.join(format!("{tag}.safetensors"));
        write_tensors(&path, &tensors);
        let err = load_embeddings_file(&path, 10).expect_err(tag).to_string();
        assert!(
            err.contains(want)
                && err.contains(&format!("{tag}.safetensors"))
                && !err.contains('\n'),
            "{tag}: {err}"
        );
    }
    let good = Tensor::randn(&[10, 4], 1.0, &mut Rng::new(2));
    let path = dir.join("good.safetensors");
    save_embeddings(&path, &good).unwrap();
    assert_eq!(
        load_embeddings_file(&path, 10).unwrap().to_vec(),
        good.to_vec()
    );
}

/// A byte-level tokenizer with the 256 byte tokens as ids 0..255 and no merges (fits the tiny
/// model's 320-token vocabulary).
fn byte_tokenizer() -> Tokenizer {
    let vocab: serde_json::Map<String, serde_json::Value> = (0..=255u8)
        .map(|b| {
            (
                ilrec::tokenizer::byte_level::byte_to_char(b).to_string(),
                serde_json::json!(b),
            )
        })
        .collect();
    let json = serde_json::json!({
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "decoder": {"type": "ByteLevel"},
    });
    Tokenizer::from_json(&json, "byte tokenizer").unwrap()
}

#[test]
fn llm_embeddings_equal_an_independent_per_text_computation() {
    let model = Llama::from_dir(fixture("tiny-llama")).unwrap();
    let tok = byte_tokenizer();
    let texts: Vec<String> = [
        "Toy Story (1995); genres: Animation",
        "Heat",
        "A stapler; brand: Acme; categories: Office",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut seen = 0;
    let got = llm_item_embeddings(&model, &tok, &texts, 2, &mut |n| seen += n).unwrap();
    assert_eq!(seen, texts.len(), "every text reported done once"); // batch 2: padding in use
    let d = model.config.hidden_size;
    assert_eq!(got.shape(), &[3, d]);
    let norm_w = model.params.value(model.final_norm_id()).to_vec();
    let eps = model.config.rms_norm_eps as f64;
    for (i, text) in texts.iter().enumerate() {
        // One text alone (no padding), the raw last-block output, RMSNorm and mean by hand in f64.
        let ids = tok.encode(text);
        let input = BatchInput::new(ids.clone(), 1, ids.len()).unwrap();
        let mut tape = Tape::inference();
        let out = model.forward(&mut tape, &input, None).unwrap();
        let h = tape.value(*out.hidden.last().unwrap()).to_vec();
        let mut want = vec![0.0f64; d];
        for row in h.chunks(d) {
            let ms = row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            for j in 0..d {
                want[j] += row[j] as f64 * inv * norm_w[j] as f64 / ids.len() as f64;
            }
        }
        common::assert_close(
            &got.to_vec()[i * d..(i + 1) * d],
            &want,
            1e-4,
            &format!("text {i}"),
        );
    }
    // The cache: a second call reads the file and gives the same values; other texts, another file.
    let dir = temp_dir("llm-cache");
    let (a, path) = llm_item_embeddings_cached(&model, &tok, &texts, 2, &dir, &mut |_| {}).unwrap();
    assert!(path.exists());
    let (b, path_again) =
        llm_item_embeddings_cached(&model, &tok, &texts, 3, &dir, &mut |_| {}).unwrap();
    assert_eq!((a.to_vec(), &path), (b.to_vec(), &path_again));
    let (_, other) =
        llm_item_embeddings_cached(&model, &tok, &texts[..2], 2, &dir, &mut |_| {}).unwrap();
    assert_ne!(other, path);
    let empty = vec!["ok".to_string(), String::new()];
    let err = llm_item_embeddings(&model, &tok, &empty, 2, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("item 1"), "{err}");
}

/// Runs the cached embedding of `texts` into `dir` and "kills" it after PARTIAL_EVERY + batch
/// texts (the progress callback panics); returns the one file it left, the partial rows.
fn kill_embedding_run(
    model: &Llama,
    tok: &Tokenizer,
    texts: &[String],
    batch: usize,
    dir: &Path,
) -> PathBuf {
    let mut seen = 0;
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        llm_item_embeddings_cached(model, tok, texts, batch, dir, &mut |k| {
            seen += k;
            assert!(seen <= PARTIAL_EVERY + batch, "killed");
        })
    }));
    assert!(killed.is_err(), "the callback stops the run");
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [partial] = files.as_slice() else {
        panic!("one partial file, found {files:?}")
    };
    assert!(
        partial.to_string_lossy().ends_with(".partial.safetensors"),
        "{partial:?}"
    );
    partial.clone()
}

/// A killed embedding run keeps its rows: the partial file is written every PARTIAL_EVERY
/// texts, read back by the next call (a doctored row proves it is read, not recomputed), the
/// remaining texts are embedded in the same batches (the uninterrupted run's bits), and the
/// partial file is gone once the whole table is saved. A partial of the wrong width is an
/// error naming the file.
#[test]
fn llm_embeddings_resume_from_the_rows_a_killed_run_saved() {
    let model = Llama::from_dir(fixture("tiny-llama")).unwrap();
    let (tok, d, batch) = (byte_tokenizer(), model.config.hidden_size, 4);
    let n = PARTIAL_EVERY + 3 * batch + 1; // one partial save, then a ragged last batch
    let texts: Vec<String> = (0..n)
        .map(|i| format!("item {i}; brand: b{}", i % 7))
        .collect();
    let whole = llm_item_embeddings(&model, &tok, &texts, batch, &mut |_| {})
        .unwrap()
        .to_vec();

    let dir = temp_dir("llm-resume");
    let partial = &kill_embedding_run(&model, &tok, &texts, batch, &dir);
    let saved = load_embeddings_file(partial, PARTIAL_EVERY)
        .unwrap()
        .to_vec();
    assert_eq!(
        saved,
        whole[..PARTIAL_EVERY * d],
        "the saved rows are the run's rows"
    );

    // Doctor row 0 of the partial: the resumed table must carry it (read back, not recomputed).
    let mut doctored = saved.clone();
    doctored[..d].fill(7.0);
    save_embeddings(
        partial,
        &Tensor::from_vec(doctored, &[PARTIAL_EVERY, d]).unwrap(),
    )
    .unwrap();
    let mut reported = Vec::new();
    let (got, path) =
        llm_item_embeddings_cached(&model, &tok, &texts, batch, &dir, &mut |k| reported.push(k))
            .unwrap();
    assert_eq!(partial_path(&path), *partial);
    assert_eq!(
        reported[0], PARTIAL_EVERY,
        "the rows read back are reported first"
    );
    assert_eq!(
        reported.iter().sum::<usize>(),
        n,
        "every text reported once"
    );
    let got = got.to_vec();
    assert!(
        got[..d].iter().all(|&v| v == 7.0),
        "row 0 comes from the partial file"
    );
    assert_eq!(
        got[d..],
        whole[d..],
        "the other rows are the uninterrupted run's bits"
    );
    assert!(
        !partial.exists(),
        "the partial file is removed once the table is saved"
    );

    // A partial that does not fit the model: an error naming the file, nothing overwritten.
    std::fs::remove_file(&path).unwrap();
    save_embeddings(
        partial,
        &Tensor::from_vec(vec![0.0; 2 * (d + 1)], &[2, d + 1]).unwrap(),
    )
    .unwrap();
    let err = llm_item_embeddings_cached(&model, &tok, &texts, batch, &dir, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("partial.safetensors") && err.contains("delete"),
        "{err}"
    );
}
