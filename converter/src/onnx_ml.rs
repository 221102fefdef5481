//! scikit-learn models as skl2onnx exports them: the network is standard ONNX, wrapped in
//! `ai.onnx.ml` ops tract cannot read. Before tract sees the file:
//!
//! * `ZipMap` (probabilities as a sequence of maps) is dropped: its input, the probability
//!   tensor `[N, classes]`, becomes the graph output under the ZipMap's output name;
//! * the label output (`ArgMax` -> `ArrayFeatureExtractor` -> `Reshape` -> `Cast`) is dropped:
//!   the predicted class is the argmax of the probabilities, and the labels themselves (class
//!   names or ids) are not tensors kiln computes;
//! * `Scaler` (`(x - offset) · scale`, what `StandardScaler` and `MinMaxScaler` export) becomes
//!   `Sub` and `Mul` with constants, which kiln folds into the first dense layer;
//! * `Normalizer` (each row divided by its L1 or L2 norm or its maximum, a zero norm leaving
//!   the row as it is, as onnxruntime does) becomes a reduction, `Equal`/`Where` for the zero
//!   guard and `Div`;
//! * any other `ai.onnx.ml` op is refused by name.

use anyhow::{bail, Result};
use std::collections::HashSet;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, TensorProto, TypeProto,
};

const ML: &str = "ai.onnx.ml";

/// Whether the model uses `ai.onnx.ml` ops.
pub fn needs_rewrite(m: &ModelProto) -> bool {
    m.graph
        .as_ref()
        .is_some_and(|g| g.node.iter().any(|n| n.domain == ML))
}

fn floats(name: &str, v: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: DataType::Float as i32,
        dims: vec![v.len() as i64],
        float_data: v,
        ..Default::default()
    }
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name,
        input: inputs,
        output: vec![output],
        ..Default::default()
    }
}

/// Rewrites the `ai.onnx.ml` parts (see the module docs); returns one note per change the user
/// should know about.
pub fn rewrite(m: &mut ModelProto) -> Result<Vec<String>> {
    // Reductions take their axes as an input from opset 18 (an attribute before).
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(18, |o| o.version);
    let Some(g) = m.graph.as_mut() else {
        return Ok(vec![]);
    };
    let mut notes = Vec::new();
    let mut nodes = Vec::with_capacity(g.node.len());
    let mut inits = Vec::new();
    let mut renamed: Vec<(String, String)> = Vec::new();
    for n in std::mem::take(&mut g.node) {
        if n.domain != ML {
            nodes.push(n);
            continue;
        }
        match n.op_type.as_str() {
            "ZipMap" => {
                // Its input becomes the output of that name.
                if let (Some(x), Some(y)) = (n.input.first(), n.output.first()) {
                    renamed.push((y.clone(), x.clone()));
                }
            }
            "Scaler" => {
                let get = |a: &str| {
                    n.attribute
                        .iter()
                        .find(|t| t.name == a)
                        .map(|t| t.floats.clone())
                        .unwrap_or_default()
                };
                let (offset, scale) = (get("offset"), get("scale"));
                let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
                    bail!("Scaler '{}' needs one input and one output", n.name);
                };
                let off = format!("{y}.scaler_offset");
                let sc = format!("{y}.scaler_scale");
                let mid = format!("{y}.scaler_centered");
                inits.push(floats(
                    &off,
                    if offset.is_empty() { vec![0.0] } else { offset },
                ));
                inits.push(floats(
                    &sc,
                    if scale.is_empty() { vec![1.0] } else { scale },
                ));
                nodes.push(node(
                    "Sub",
                    format!("{}.sub", n.name),
                    vec![x.clone(), off],
                    mid.clone(),
                ));
                nodes.push(node(
                    "Mul",
                    format!("{}.mul", n.name),
                    vec![mid, sc],
                    y.clone(),
                ));
            }
            "Normalizer" => {
                let norm = n
                    .attribute
                    .iter()
                    .find(|t| t.name == "norm")
                    .map(|t| String::from_utf8_lossy(&t.s).to_string())
                    .unwrap_or_else(|| "MAX".into());
                let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
                    bail!("Normalizer '{}' needs one input and one output", n.name);
                };
                let reduce = match norm.as_str() {
                    "L1" => "ReduceL1",
                    "L2" => "ReduceL2",
                    "MAX" => "ReduceMax",
                    other => bail!("Normalizer '{}' with norm {other} is not supported", n.name),
                };
                let p = |s: &str| format!("{y}.normalizer_{s}");
                let mut r = node(reduce, p("reduce"), vec![x.clone()], p("norm"));
                let keep = AttributeProto {
                    name: "keepdims".into(),
                    r#type: AttributeType::Int as i32,
                    i: 1,
                    ..Default::default()
                };
                r.attribute.push(keep);
                if opset >= 18 {
                    inits.push(TensorProto {
                        name: p("axes"),
                        data_type: DataType::Int64 as i32,
                        dims: vec![1],
                        int64_data: vec![1],
                        ..Default::default()
                    });
                    r.input.push(p("axes"));
                } else {
                    r.attribute.push(AttributeProto {
                        name: "axes".into(),
                        r#type: AttributeType::Ints as i32,
                        ints: vec![1],
                        ..Default::default()
                    });
                }
                nodes.push(r);
                inits.push(floats(&p("zero"), vec![0.0]));
                inits.push(floats(&p("one"), vec![1.0]));
                nodes.push(node(
                    "Equal",
                    p("is_zero"),
                    vec![p("norm"), p("zero")],
                    p("zero_mask"),
                ));
                let mut w = node(
                    "Where",
                    p("guard"),
                    vec![p("zero_mask"), p("one"), p("norm")],
                    p("divisor"),
                );
                w.output = vec![p("divisor")];
                nodes.push(w);
                nodes.push(node(
                    "Div",
                    p("div"),
                    vec![x.clone(), p("divisor")],
                    y.clone(),
                ));
            }
            // The label branch: removed with the label output below.
            "ArrayFeatureExtractor" | "LabelEncoder" => nodes.push(n),
            other => bail!(
                "scikit-learn (ai.onnx.ml) op '{other}' (node '{}') is not supported; kiln reads \
                 Scaler, Normalizer, ZipMap and the class-label branch of skl2onnx exports",
                n.name
            ),
        }
    }
    g.node = nodes;
    g.initializer.extend(inits);
    // ZipMap outputs: the probability tensor under the output's name.
    for (zip_out, probs) in &renamed {
        for n in g.node.iter_mut() {
            for o in n.output.iter_mut() {
                if o == probs {
                    *o = zip_out.clone();
                }
            }
            for i in n.input.iter_mut() {
                if i == probs {
                    *i = zip_out.clone();
                }
            }
        }
        if let Some(out) = g.output.iter_mut().find(|o| &o.name == zip_out) {
            out.r#type = Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: None,
                })),
                ..Default::default()
            });
            notes.push(format!(
                "output '{zip_out}' is the probability tensor [N, classes] (skl2onnx's ZipMap of \
                 it into a list of maps dropped)"
            ));
        }
    }
    // Outputs computed through the remaining ml ops (the class label) are dropped.
    let ml_outputs = outputs_through_ml(g);
    let before = g.output.len();
    g.output.retain(|o| {
        let drop = ml_outputs.contains(&o.name);
        if drop {
            notes.push(format!(
                "output '{}' dropped: it maps the argmax of the probabilities to class labels \
                 (ArrayFeatureExtractor); take the argmax of the probabilities instead",
                o.name
            ));
        }
        !drop
    });
    if g.output.is_empty() && before > 0 {
        bail!(
            "every output of the model is computed by scikit-learn label ops \
             (ArrayFeatureExtractor, LabelEncoder), which are not supported"
        );
    }
    remove_dead_nodes(g);
    if g.node.iter().any(|n| n.domain == ML) {
        bail!("internal: ai.onnx.ml ops left after the rewrite");
    }
    m.opset_import.retain(|o| o.domain != ML);
    Ok(notes)
}

/// Names of tensors that depend on an `ai.onnx.ml` node.
fn outputs_through_ml(g: &GraphProto) -> HashSet<String> {
    let mut tainted = HashSet::new();
    for n in &g.node {
        if n.domain == ML || n.input.iter().any(|i| tainted.contains(i)) {
            tainted.extend(n.output.iter().cloned());
        }
    }
    tainted
}

/// Drops nodes none of whose outputs is read by another node or a graph output.
fn remove_dead_nodes(g: &mut GraphProto) {
    loop {
        let used: HashSet<&String> = g
            .node
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(g.output.iter().map(|o| &o.name))
            .collect();
        let keep: Vec<bool> = g
            .node
            .iter()
            .map(|n| n.output.iter().any(|o| used.contains(o)))
            .collect();
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut it = keep.into_iter();
        g.node.retain(|_| it.next().unwrap_or(true));
    }
}
