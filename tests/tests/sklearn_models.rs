//! scikit-learn classifiers as skl2onnx exports them (`tests/data/sklearn`, made by
//! `scripts/gen_sklearn_models.py`): kiln converts them without hand surgery (the ai.onnx.ml
//! wrappers rewritten, the input scaler folded into the first dense layer, a normalizer
//! computed) and its
//! probabilities match scikit-learn's `predict_proba` and onnxruntime's on the same file.

use kiln_converter::verify::run_kiln;
use kiln_runtime::OpKind;
use kiln_tests::{npy, rel_err, workspace};

#[test]
fn sklearn_mlp_classifiers_convert_and_match_scikit_learn() {
    let dir = workspace().join("tests/data/sklearn");
    for name in [
        "mlp_iris",
        "mlp_digits",
        "mlp_iris_l2",
        "mlp_iris_l1",
        "mlp_iris_max",
    ] {
        let src = dir.join(format!("{name}.onnx"));
        let g = kiln_converter::import_file(&src).unwrap();
        let kinds: Vec<OpKind> = g.nodes.iter().map(|n| n.kind()).collect();
        // A scaler is affine: it folds into the first layer. A normalizer is not: it runs.
        let normalizer = name.starts_with("mlp_iris_");
        assert!(
            normalizer || !kinds.contains(&OpKind::Binary),
            "{name}: the scaler was not folded into the first layer: {kinds:?}"
        );
        assert_eq!(g.outputs.len(), 1, "{name}: only the probabilities remain");
        let bytes = kiln_converter::emit::emit(&g).unwrap().0;
        let x = npy(&dir.join(format!("{name}_inputs.npy"))).unwrap();
        let features = x.shape[1];
        let rows: Vec<Vec<Vec<f32>>> = x.data.chunks(features).map(|r| vec![r.to_vec()]).collect();
        let got: Vec<f32> = run_kiln(&bytes, &rows)
            .unwrap()
            .into_iter()
            .flat_map(|o| o[0].clone())
            .collect();
        for reference in ["sklearn", "ort"] {
            let want = npy(&dir.join(format!("{name}_{reference}.npy")))
                .unwrap()
                .data;
            assert_eq!(got.len(), want.len(), "{name}");
            let e = rel_err(&got, &want);
            println!("{name}: kiln vs {reference}: max relative error {e:.1e}");
            assert!(e <= 1e-4, "{name}: kiln vs {reference}: {e}");
        }
    }
}
