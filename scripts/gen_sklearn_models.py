"""scikit-learn classifiers exported with skl2onnx the standard way (`skl2onnx.to_onnx` on a
fitted pipeline, default options), for the tests of `kiln convert` on scikit-learn files:

* mlp_iris:   StandardScaler -> MLPClassifier(16) on the iris data (4 features, 3 classes);
* mlp_digits: MinMaxScaler -> MLPClassifier(32, 16) on the 8x8 digits (64 features, 10 classes);
* mlp_iris_l2, mlp_iris_l1, mlp_iris_max: Normalizer (each norm) -> MLPClassifier(16) on iris
  (skl2onnx's Normalizer op, which cannot fold into the first layer: kiln computes it).

skl2onnx wraps the network in ai.onnx.ml ops (Scaler, ZipMap, ArrayFeatureExtractor) that tract
cannot read; kiln rewrites them (converter/src/onnx_ml.rs). Each model is saved as
tests/data/sklearn/<name>.onnx with inputs.npy (float32 rows), scikit-learn's own
predict_proba (<name>_sklearn.npy) and onnxruntime's probabilities for the same file
(<name>_ort.npy). The committed files are what CI uses: it needs no skl2onnx.

    python -m venv /tmp/sk && /tmp/sk/bin/pip install skl2onnx scikit-learn onnx==1.20.0 onnxruntime
    /tmp/sk/bin/python scripts/gen_sklearn_models.py --out tests/data/sklearn
"""
import argparse
import os

import numpy as np
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import to_onnx
from sklearn.datasets import load_digits, load_iris
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, Normalizer, StandardScaler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cases = {
        "mlp_iris": (load_iris(return_X_y=True), StandardScaler(), (16,)),
        "mlp_digits": (load_digits(return_X_y=True), MinMaxScaler(), (32, 16)),
        "mlp_iris_l2": (load_iris(return_X_y=True), Normalizer("l2"), (16,)),
        "mlp_iris_l1": (load_iris(return_X_y=True), Normalizer("l1"), (16,)),
        "mlp_iris_max": (load_iris(return_X_y=True), Normalizer("max"), (16,)),
    }
    for name, ((x, y), scaler, hidden) in cases.items():
        x = x.astype(np.float32)
        pipe = make_pipeline(scaler, MLPClassifier(hidden_layer_sizes=hidden, max_iter=3000,
                                                   random_state=0)).fit(x, y)
        model = to_onnx(pipe, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
        path = os.path.join(args.out, f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        rows = x[::max(1, len(x) // 40)][:40]
        sess = ort.InferenceSession(path)
        probs = sess.run(["output_probability"], {"X": rows})[0]
        probs = np.array([[p[k] for k in sorted(p)] for p in probs], np.float32)
        np.save(os.path.join(args.out, f"{name}_inputs.npy"), rows)
        np.save(os.path.join(args.out, f"{name}_sklearn.npy"), pipe.predict_proba(rows).astype(np.float32))
        np.save(os.path.join(args.out, f"{name}_ort.npy"), probs)
        print(f"{name}: {os.path.getsize(path)} B, train accuracy {pipe.score(x, y):.4f}")
    with open(os.path.join(args.out, "VERSIONS.txt"), "w") as f:
        f.write(f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
                f"onnxruntime {ort.__version__}, numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
