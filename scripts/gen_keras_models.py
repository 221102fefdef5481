"""Small Keras models exported to float .tflite, the ways tutorial code does it, for the tests
of `kiln convert` and `kiln verify` on Keras files:

* conv1d:  Conv1D -> GlobalAveragePooling1D -> Dense -> softmax (a sensor/audio classifier);
  Keras lowers Conv1D to RESHAPE / CONV_2D / RESHAPE, which tract has been seen to read wrongly.
* flatten: Conv2D -> Flatten -> Dense -> softmax with a dynamic batch: Keras' Flatten becomes
  SHAPE / STRIDED_SLICE (shrink mask) / PACK / RESHAPE, which tract cannot read.
* prelu:   Conv2D -> PReLU (one slope per channel) -> GlobalAveragePooling2D -> Dense -> softmax
  (TFLite's PRELU with `[1, 1, C]` slopes).

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


MODELS = {"conv1d": conv1d, "flatten": flatten, "prelu": prelu}


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
        x = rng.standard_normal((8,) + shape).astype(np.float32)
        y = np.concatenate([model(x[i:i + 1], training=False).numpy() for i in range(len(x))])
        np.save(os.path.join(a.out, f"{name}_inputs.npy"), x)
        np.save(os.path.join(a.out, f"{name}_keras.npy"), y.astype(np.float32))
        print(f"{name}: {os.path.getsize(os.path.join(a.out, name + '.tflite'))} bytes")
    with open(os.path.join(a.out, "VERSIONS.txt"), "w") as f:
        f.write(f"tensorflow {tf.__version__}, keras {tf.keras.__version__ if hasattr(tf.keras, '__version__') else ''}, numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
