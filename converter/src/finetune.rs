//! Fine-tuning support on the host: a `.kiln` model back into a graph, and the graph with a
//! tuned head written into it. The training itself is the runtime's
//! ([`kiln_runtime::train`]), the same code a device runs.

use crate::ir::{Data, Graph, Node, Tensor};
use anyhow::{bail, Result};
use kiln_runtime::ops::{Act, DenseParams, DequantizeParams, OpParams, QuantizeParams};
use kiln_runtime::train::{Activation, ModelHead};
use kiln_runtime::{DType, Model, OpKind};

/// A loaded model as a graph with the same tensor indices (constants keep their stored bytes
/// and layouts: packed weights stay packed, and `emit` leaves them so).
pub fn graph_from_model(m: &Model<'_>) -> Result<Graph> {
    let mut g = Graph::default();
    for i in 0..m.num_tensors() {
        let t = m.tensor(i);
        let data = (t.storage == kiln_runtime::format::Storage::Constant).then(|| {
            let b = m.constant_bytes(&t);
            match t.dtype {
                DType::F32 => Data::F32(kiln_runtime::cast::bytes_as_f32(b).to_vec()),
                DType::I32 => Data::I32(kiln_runtime::cast::bytes_as_i32(b).to_vec()),
                DType::I8 => Data::I8(kiln_runtime::cast::bytes_as_i8(b).to_vec()),
                _ => Data::Raw(b.to_vec()),
            }
        });
        g.tensors.push(Tensor {
            name: t.name().to_string(),
            dtype: t.dtype,
            shape: t.shape().to_vec(),
            data,
            quant: t.quant,
        });
    }
    for i in 0..m.num_ops() {
        let op = m.op(i);
        let params = m.op_params(&op)?;
        g.nodes.push(Node::new(
            op.name(),
            params,
            (0..op.num_inputs()).map(|k| m.op_input(&op, k)).collect(),
            (0..op.num_outputs()).map(|k| m.op_output(&op, k)).collect(),
        ));
    }
    g.inputs = (0..m.num_inputs())
        .map(|k| m.input_tensor(k))
        .collect::<Result<_, _>>()?;
    g.outputs = (0..m.num_outputs())
        .map(|k| m.output_tensor(k))
        .collect::<Result<_, _>>()?;
    Ok(g)
}

/// What [`with_tuned_head`] changed, for the user.
#[derive(Clone, Debug, Default)]
pub struct HeadRewrite {
    /// The head was int8 and now runs in f32 behind a dequantize of the backbone's features.
    pub int8_to_f32: bool,
    /// f16 weights of the head became f32 (training moved them off the f16 grid).
    pub f16_to_f32: bool,
}

/// `m` with the head `mh` holding `params` (the [`kiln_runtime::train::Head`] layout).
///
/// A float head keeps its ops; its weights and biases are replaced (f32, packed again by
/// `emit`). An int8 head is replaced by a dequantize of its input, f32 dense layers, the f32
/// softmax if the model had one, and a quantize to the old output's scale and zero point if
/// the model's output was int8: the backbone stays int8, the tuned head is f32.
pub fn with_tuned_head(
    m: &Model<'_>,
    mh: &ModelHead,
    params: &[f32],
) -> Result<(Graph, HeadRewrite)> {
    let head = &mh.head;
    if params.len() != head.num_params() {
        bail!(
            "{} parameters for a head of {}",
            params.len(),
            head.num_params()
        );
    }
    let mut g = graph_from_model(m)?;
    let mut note = HeadRewrite::default();
    let layer_data = |l: usize| {
        let layer = head.layers()[l];
        let off = head.param_offset(l);
        let (m_, k) = (layer.outputs, layer.inputs);
        (
            params[off..off + m_ * k].to_vec(),
            params[off + m_ * k..off + m_ * k + m_].to_vec(),
            m_,
            k,
        )
    };
    if mh.feature_quant.is_none() && m.tensor(mh.features).dtype == DType::F32 {
        let int8_inside = (mh.first_op..g.nodes.len()).any(|i| {
            g.nodes[i]
                .inputs
                .iter()
                .flatten()
                .any(|&t| g.tensors[t].dtype == DType::I8 && g.tensors[t].data.is_none())
        });
        if !int8_inside {
            for l in 0..head.layers().len() {
                let op = mh.layer_op(l).expect("every head layer has an op");
                let (w, b, mo, k) = layer_data(l);
                let name = g.nodes[op].name.clone();
                if let Some(wt) = g.nodes[op].input(1) {
                    note.f16_to_f32 |= g.tensors[wt].dtype == DType::F16;
                }
                let wt = g.add_const_f32(format!("{name}.tuned_weights"), vec![mo, k], w);
                let bt = g.add_const_f32(format!("{name}.tuned_bias"), vec![mo], b);
                let node = &mut g.nodes[op];
                node.inputs.resize(3, None);
                node.inputs[1] = Some(wt);
                node.inputs[2] = Some(bt);
                match &mut node.op {
                    OpParams::Dense(p) => p.packed = false,
                    _ => bail!("internal: head layer {l} is not a dense op"),
                }
            }
            crate::passes::dce::run(&mut g);
            return Ok((g, note));
        }
    }
    // An int8 head (or a float head reading int8 features): rebuild it in f32.
    note.int8_to_f32 = true;
    let out = *g
        .outputs
        .first()
        .ok_or_else(|| anyhow::anyhow!("no output"))?;
    let (out_name, out_dtype, out_quant, out_shape) = {
        let t = &g.tensors[out];
        (t.name.clone(), t.dtype, t.quant, t.shape.clone())
    };
    let tail: Vec<Node> = g.nodes.drain(mh.first_op..).collect();
    let mut x = mh.features;
    if g.tensors[x].dtype == DType::I8 {
        let shape = g.tensors[x].shape.clone();
        let name = format!("{}.dequantize", g.tensors[x].name);
        x = g.add_op(
            &name,
            OpParams::Dequantize(DequantizeParams),
            vec![Some(x)],
            shape,
        );
    }
    for l in 0..head.layers().len() {
        let layer = head.layers()[l];
        let op = mh.layer_op(l).expect("every head layer has an op") - mh.first_op;
        let name = tail[op].name.clone();
        let (w, b, mo, k) = layer_data(l);
        let act = match layer.act {
            Activation::Identity => Act::NONE,
            Activation::Clamp { lo, hi } => Act::Float { lo, hi },
            _ => bail!("internal: an int8 head with a {:?} activation", layer.act),
        };
        let wt = g.add_const_f32(format!("{name}.tuned_weights"), vec![mo, k], w);
        let bt = g.add_const_f32(format!("{name}.tuned_bias"), vec![mo], b);
        let lead = &g.tensors[x].shape;
        let mut shape = lead[..lead.len() - 1].to_vec();
        shape.push(mo);
        x = g.add_op(
            &format!("{name}.tuned"),
            OpParams::Dense(DenseParams {
                act,
                ..DenseParams::default()
            }),
            vec![Some(x), Some(wt), Some(bt)],
            shape,
        );
    }
    // The logits to the output's shape, softmax, and back to int8 if the output was.
    if g.tensors[x].shape != out_shape {
        x = g.add_op(
            "head.reshape",
            OpParams::Reshape(kiln_runtime::ops::ReshapeParams),
            vec![Some(x)],
            out_shape.clone(),
        );
    }
    if mh.softmax {
        let sm = tail
            .iter()
            .find(|n| n.kind() == OpKind::Softmax)
            .map(|n| n.op)
            .ok_or_else(|| anyhow::anyhow!("internal: softmax not found"))?;
        let OpParams::Softmax(mut p) = sm else {
            bail!("internal: softmax params");
        };
        p.quant = Default::default();
        x = g.add_op(
            "head.softmax",
            OpParams::Softmax(p),
            vec![Some(x)],
            out_shape.clone(),
        );
    }
    if out_dtype == DType::I8 {
        let y = g.add_tensor(out_name.clone(), DType::I8, out_shape);
        g.tensors[y].quant = out_quant;
        g.push(Node::new(
            "head.quantize",
            OpParams::Quantize(QuantizeParams),
            vec![Some(x)],
            vec![y],
        ));
        x = y;
    }
    g.tensors[x].name = out_name;
    g.outputs = vec![x];
    crate::passes::dce::run(&mut g);
    Ok((g, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_read_back_into_a_graph_computes_the_same_outputs() {
        let spec = kiln_runtime::writer::example_cnn();
        let bytes = kiln_runtime::writer::write(&spec).unwrap();
        let buf = kiln_runtime::writer::AlignedBuf::new(&bytes);
        let m = Model::from_bytes(buf.as_slice()).unwrap();
        let g = graph_from_model(&m).unwrap();
        let (again, _) = crate::emit::emit(&g).unwrap();
        let x: Vec<f32> = (0..m.tensor(m.input_tensor(0).unwrap()).len())
            .map(|i| (i % 7) as f32 / 7.0 - 0.4)
            .collect();
        let a = crate::verify::run_kiln(&bytes, &[vec![x.clone()]]).unwrap();
        let b = crate::verify::run_kiln(&again, &[vec![x]]).unwrap();
        assert_eq!(a, b);
    }
}
