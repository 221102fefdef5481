"""Small Keras models exported to float .tflite, the ways tutorial code does it, for the tests
of `kiln convert` and `kiln verify` on Keras files:

* conv1d:  Conv1D -> GlobalAveragePooling1D -> Dense -> softmax (a sensor/audio classifier);
  Keras lowers Conv1D to RESHAPE / CONV_2D / RESHAPE, which tract has been seen to read wrongly.
* flatten: Conv2D -> Flatten -> Dense -> softmax with a dynamic batch: Keras' Flatten becomes
  SHAPE / STRIDED_SLICE (shrink mask) / PACK / RESHAPE, which tract cannot read.
* prelu:   Conv2D -> PReLU (one slope per channel) -> GlobalAveragePooling2D -> Dense -> softmax
  (TFLite's PRELU with `[1, 1, C]` slopes).
* autoencoder: Conv2D -> Conv2DTranspose -> nearest UpSampling2D -> Conv2D (TRANSPOSE_CONV; TILE).
* layernorm: Dense(gelu) -> LayerNormalization -> Dense (MEAN, SQUARED_DIFFERENCE, RSQRT).
* mobile:  MobileNetV3-style hard-swish, depthwise, squeeze-excitation (hard-sigmoid), concat,
  LeakyReLU. autoencoder and mobile are also written full-integer int8 (<name>_int8.tflite).
* segment: bilinear UpSampling2D and a nearest Resizing layer (RESIZE_BILINEAR,
  RESIZE_NEAREST_NEIGHBOR); also written int8.
* lstm_fused: the same LSTM from Keras 2 (`pip install tf_keras`, run this script with
  TF_USE_LEGACY_KERAS=1 --only lstm_fused): one UNIDIRECTIONAL_SEQUENCE_LSTM op.
* wide:    a conv/dense classifier with about 12 K weights, also written with TFLite's
  weight-only options (wide_fp16.tflite, wide_dynamic.tflite).
* lstm:    Keras 3's LSTM, which TFLite gets as a WHILE loop (three subgraphs): kiln refuses it
  with an error that says how to export it instead: unrolled, as lstm_unrolled and gru_unrolled
  are (FULLY_CONNECTED, LOGISTIC, TANH, SPLIT, UNPACK, STRIDED_SLICE).

Each model is trained for a few steps on seeded random data with the real framework, then
saved as tests/data/keras/<name>.tflite with inputs.npy and Keras' own outputs
(<name>_keras.npy). The committed files are what CI uses: it needs no TensorFlow.

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python scripts/gen_keras_models.py --out tests/data/keras
"""
import argparse
import os

import numpy as np
import tensorflow as tf


def conv1d():
    x = tf.keras.Input(shape=(32, 4), batch_size=1)
    h = tf.keras.layers.Conv1D(8, 3, activation="relu")(x)
    h = tf.keras.layers.GlobalAveragePooling1D()(h)
    y = tf.keras.layers.Dense(5, activation="softmax")(h)
    return tf.keras.Model(x, y), (32, 4), 5


def flatten():
    x = tf.keras.Input(shape=(8, 8, 1))  # dynamic batch: Flatten needs the runtime shape
    h = tf.keras.layers.Conv2D(4, 3, activation="relu")(x)
    h = tf.keras.layers.Flatten()(h)
    y = tf.keras.layers.Dense(10, activation="softmax")(h)
    return tf.keras.Model(x, y), (8, 8, 1), 10


def prelu():
    x = tf.keras.Input(shape=(8, 8, 2), batch_size=1)
    h = tf.keras.layers.Conv2D(6, 3)(x)
    h = tf.keras.layers.PReLU(alpha_initializer=tf.keras.initializers.Constant(0.25),
                              shared_axes=[1, 2])(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    y = tf.keras.layers.Dense(4, activation="softmax")(h)
    return tf.keras.Model(x, y), (8, 8, 2), 4


def autoencoder():
    # Decoder side of a convolutional autoencoder / segmentation head: Conv2DTranspose
    # (TRANSPOSE_CONV) and nearest UpSampling2D (RESHAPE / TILE / RESHAPE in the file).
    x = tf.keras.Input(shape=(8, 8, 2), batch_size=1)
    h = tf.keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    h = tf.keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(h)
    h = tf.keras.layers.UpSampling2D(2)(h)
    h = tf.keras.layers.Conv2D(3, 3, strides=2, padding="same")(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    y = tf.keras.layers.Softmax()(h)
    return tf.keras.Model(x, y), (8, 8, 2), 3


def layernorm():
    # A transformer-style block's norm: LayerNormalization is MEAN / SQUARED_DIFFERENCE / RSQRT.
    x = tf.keras.Input(shape=(6, 8), batch_size=1)
    h = tf.keras.layers.Dense(16, activation="gelu")(x)
    h = tf.keras.layers.LayerNormalization()(h)
    h = tf.keras.layers.GlobalAveragePooling1D()(h)
    y = tf.keras.layers.Dense(4, activation="softmax")(h)
    return tf.keras.Model(x, y), (6, 8), 4


def mobile():
    # MobileNetV3-style: hard-swish, depthwise, squeeze-excitation with hard-sigmoid, a concat of
    # two branches and LeakyReLU: every op has an int8 kernel.
    x = tf.keras.Input(shape=(12, 12, 3), batch_size=1)
    h = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    h = tf.keras.layers.Activation("hard_swish")(h)
    d = tf.keras.layers.DepthwiseConv2D(3, padding="same")(h)
    d = tf.keras.layers.Activation("hard_swish")(d)
    s = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(d)
    s = tf.keras.layers.Conv2D(4, 1, activation="relu")(s)
    s = tf.keras.layers.Conv2D(8, 1, activation="hard_sigmoid")(s)
    d = tf.keras.layers.Multiply()([d, s])
    b = tf.keras.layers.Conv2D(4, 1)(h)
    h = tf.keras.layers.Concatenate()([d, b])
    h = tf.keras.layers.LeakyReLU(negative_slope=0.1)(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    y = tf.keras.layers.Dense(5, activation="softmax")(h)
    return tf.keras.Model(x, y), (12, 12, 3), 5


def segment():
    # A segmentation-style head: bilinear UpSampling2D and a Resizing layer (RESIZE_BILINEAR,
    # RESIZE_NEAREST_NEIGHBOR with TF's half-pixel centers).
    x = tf.keras.Input(shape=(6, 6, 3), batch_size=1)
    h = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    h = tf.keras.layers.UpSampling2D(2, interpolation="bilinear")(h)
    h = tf.keras.layers.Resizing(9, 7, interpolation="nearest")(h)
    h = tf.keras.layers.Conv2D(3, 3, strides=2)(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    y = tf.keras.layers.Softmax()(h)
    return tf.keras.Model(x, y), (6, 6, 3), 3


def wide():
    # Enough weights (about 12 K) for TFLite's weight-only options to apply (it leaves tensors
    # under 1,024 elements in float).
    x = tf.keras.Input(shape=(8, 8, 3), batch_size=1)
    h = tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    h = tf.keras.layers.Conv2D(24, 3, activation="relu")(h)
    h = tf.keras.layers.Flatten()(h)
    h = tf.keras.layers.Dense(48, activation="relu")(h)
    y = tf.keras.layers.Dense(10, activation="softmax")(h)
    return tf.keras.Model(x, y), (8, 8, 3), 10


def lstm():
    # Keras 3 exports LSTM as a WHILE loop over a body subgraph: kiln must refuse it clearly.
    x = tf.keras.Input(shape=(10, 4), batch_size=1)
    h = tf.keras.layers.LSTM(8)(x)
    y = tf.keras.layers.Dense(3, activation="softmax")(h)
    return tf.keras.Model(x, y), (10, 4), 3


def lstm_unrolled():
    # The export kiln's refusal of `lstm` recommends: the same layer unrolled over fixed steps.
    x = tf.keras.Input(shape=(10, 4), batch_size=1)
    h = tf.keras.layers.LSTM(8, unroll=True)(x)
    y = tf.keras.layers.Dense(3, activation="softmax")(h)
    return tf.keras.Model(x, y), (10, 4), 3


def gru_unrolled():
    x = tf.keras.Input(shape=(10, 4), batch_size=1)
    h = tf.keras.layers.GRU(8, unroll=True)(x)
    y = tf.keras.layers.Dense(3, activation="softmax")(h)
    return tf.keras.Model(x, y), (10, 4), 3


def lstm_fused():
    # Keras 2 (tf_keras) exports the same LSTM as one fused UNIDIRECTIONAL_SEQUENCE_LSTM op.
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("lstm_fused needs Keras 2: pip install tf_keras, then run with TF_USE_LEGACY_KERAS=1")
    return lstm()


MODELS = {"conv1d": conv1d, "flatten": flatten, "prelu": prelu, "autoencoder": autoencoder,
          "layernorm": layernorm, "mobile": mobile, "segment": segment, "wide": wide, "lstm": lstm, "lstm_unrolled": lstm_unrolled,
          "gru_unrolled": gru_unrolled, "lstm_fused": lstm_fused}
# Also written full-integer int8 (TFLiteConverter with a representative dataset, float I/O):
# <name>_int8.tflite, checked bit for bit against LiteRT's reference kernels by `kiln verify`.
INT8 = ["autoencoder", "mobile", "segment"]
# Also written with float16 weights and dynamic-range int8 weights: <name>_fp16.tflite,
# <name>_dynamic.tflite.
WEIGHT_ONLY = ["wide"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=list(MODELS), help="models to (re)generate")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.only:
        tf.keras.utils.set_random_seed(7)
        rng = np.random.default_rng(7)
        model, shape, classes = MODELS[name]()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        xt = rng.standard_normal((64,) + shape).astype(np.float32)
        yt = rng.integers(0, classes, 64)
        model.fit(xt, yt, epochs=3, batch_size=16 if name == "flatten" else 1, verbose=0)
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        with open(os.path.join(a.out, f"{name}.tflite"), "wb") as f:
            f.write(conv.convert())
        if name in INT8:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([xt[i:i + 1]] for i in range(len(xt)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            with open(os.path.join(a.out, f"{name}_int8.tflite"), "wb") as f:
                f.write(conv.convert())
        if name in WEIGHT_ONLY:
            # TFLite's two weight-only options: float16 weights, and dynamic range (int8
            # weights, float activations).
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
            with open(os.path.join(a.out, f"{name}_fp16.tflite"), "wb") as f:
                f.write(conv.convert())
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            with open(os.path.join(a.out, f"{name}_dynamic.tflite"), "wb") as f:
                f.write(conv.convert())
        x = rng.standard_normal((8,) + shape).astype(np.float32)
        y = np.concatenate([model(x[i:i + 1], training=False).numpy() for i in range(len(x))])
        np.save(os.path.join(a.out, f"{name}_inputs.npy"), x)
        np.save(os.path.join(a.out, f"{name}_keras.npy"), y.astype(np.float32))
        print(f"{name}: {os.path.getsize(os.path.join(a.out, name + '.tflite'))} bytes")
    legacy = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
    with open(os.path.join(a.out, "VERSIONS_keras2.txt" if legacy else "VERSIONS.txt"), "w") as f:
        if legacy:
            import tf_keras
            f.write(f"tensorflow {tf.__version__}, tf_keras {tf_keras.__version__}, numpy {np.__version__}\n")
        else:
            f.write(f"tensorflow {tf.__version__}, keras {tf.keras.__version__}, numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
