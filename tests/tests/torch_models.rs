//! PyTorch models as both of PyTorch's ONNX exporters write them (`tests/data/torch`, made by
//! `scripts/gen_torch_models.py` with the real PyTorch): kiln converts each and its outputs
//! match PyTorch's own on the same inputs. Between them they hold ConvTranspose, nearest and
//! bilinear Resize, BatchNorm, Hardswish, Hardsigmoid, a squeeze-excitation, Concat, ELU,
//! PRelu, LeakyRelu, LayerNorm, GELU, LSTM, GRU and the Gather of `o[:, -1]`.

use kiln_converter::verify::run_kiln;
use kiln_runtime::OpKind;
use kiln_tests::{npy, rel_err, workspace};

#[test]
fn pytorch_models_convert_and_match_pytorch() {
    let dir = workspace().join("tests/data/torch");
    for name in ["decoder", "mobile", "norm", "lstm", "gru"] {
        let x = npy(&dir.join(format!("{name}_inputs.npy"))).unwrap();
        let want = npy(&dir.join(format!("{name}_torch.npy"))).unwrap().data;
        let per = x.data.len() / x.shape[0];
        let rows: Vec<Vec<Vec<f32>>> = x.data.chunks(per).map(|r| vec![r.to_vec()]).collect();
        for exporter in ["script", "dynamo"] {
            let src = dir.join(format!("{name}_{exporter}.onnx"));
            let g = kiln_converter::import_file(&src)
                .unwrap_or_else(|e| panic!("{name} ({exporter}): {e:#}"));
            let kinds: Vec<OpKind> = g.nodes.iter().map(|n| n.kind()).collect();
            // The recurrent layers are written out step by step, not left to anything opaque.
            if name == "lstm" || name == "gru" {
                assert!(kinds.contains(&OpKind::Dense), "{name}: {kinds:?}");
            }
            if name == "decoder" {
                assert!(
                    kinds.contains(&OpKind::TransposeConv) && kinds.contains(&OpKind::Resize),
                    "{name}: {kinds:?}"
                );
            }
            let bytes = kiln_converter::emit::emit(&g).unwrap().0;
            let got: Vec<f32> = run_kiln(&bytes, &rows)
                .unwrap()
                .into_iter()
                .flat_map(|o| o[0].clone())
                .collect();
            assert_eq!(got.len(), want.len(), "{name} ({exporter})");
            let e = rel_err(&got, &want);
            println!("{name} ({exporter}): kiln vs PyTorch: max relative error {e:.1e}");
            assert!(e <= 1e-4, "{name} ({exporter}): {e}");
        }
    }
}
