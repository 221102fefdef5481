//! EinSum (how tract expresses matmul, 1x1 conv and flatten + dense after decluttering) to
//! dense or batched matmul, with transposes folded into constant weights.

use super::layout::permute;
use super::lower::tensor_f32;
use super::Imp;
use crate::ir::{Node, TId};
use anyhow::{anyhow, bail, Result};
use kiln_runtime::ops::{self as kops, OpParams};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

impl Imp<'_> {
    pub(super) fn einsum(&mut self, node: &TypedNode, e: &EinSum) -> Result<()> {
        let name = node.name.clone();
        if node.inputs.len() != 2 {
            bail!("einsum with {} inputs", node.inputs.len());
        }
        let (ia, ib) = (node.inputs[0], node.inputs[1]);
        let (sa, sb) = (self.shape(ia)?, self.shape(ib)?);
        let so = self.shape(OutletId::new(node.id, 0))?;
        #[derive(Clone, Copy)]
        struct Ax {
            a: Option<usize>,
            b: Option<usize>,
            o: Option<usize>,
        }
        let mut axes = Vec::new();
        for ax in e.axes.iter_all_axes() {
            let one = |v: &TVec<usize>| -> Result<Option<usize>> {
                match v.len() {
                    0 => Ok(None),
                    1 => Ok(Some(v[0])),
                    _ => bail!("einsum with a repeated axis (diagonal) is not supported"),
                }
            };
            axes.push(Ax {
                a: one(&ax.inputs[0])?,
                b: one(&ax.inputs[1])?,
                o: one(&ax.outputs[0])?,
            });
        }
        let size = |x: &Ax| {
            x.o.map(|i| so[i])
                .or(x.a.map(|i| sa[i]))
                .or(x.b.map(|i| sb[i]))
                .unwrap_or(1)
        };
        for x in &axes {
            let single = (x.a.is_some() as u8 + x.b.is_some() as u8) == 1 && x.o.is_none();
            if single && size(x) != 1 {
                bail!("einsum summing an axis of a single operand is not supported");
            }
        }
        let mut batch: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_some() && x.b.is_some() && x.o.is_some())
            .collect();
        batch.sort_by_key(|x| x.o);
        let mut m: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_some() && x.b.is_none() && x.o.is_some())
            .collect();
        m.sort_by_key(|x| x.o);
        let mut nn: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_none() && x.b.is_some() && x.o.is_some())
            .collect();
        nn.sort_by_key(|x| x.o);
        let k: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_some() && x.b.is_some() && x.o.is_none())
            .collect();
        let a_rest: Vec<usize> = axes
            .iter()
            .filter(|x| x.a.is_some() && x.b.is_none() && x.o.is_none())
            .filter_map(|x| x.a)
            .collect();
        let b_rest: Vec<usize> = axes
            .iter()
            .filter(|x| x.b.is_some() && x.a.is_none() && x.o.is_none())
            .filter_map(|x| x.b)
            .collect();
        let o_only: Vec<usize> = axes
            .iter()
            .filter(|x| x.o.is_some() && x.a.is_none() && x.b.is_none())
            .filter_map(|x| x.o)
            .collect();
        let prod = |v: &[Ax], s: &[usize], f: fn(&Ax) -> Option<usize>| -> usize {
            v.iter().map(|x| f(x).map_or(1, |i| s[i])).product()
        };
        let (mm, kk, nsz) = (
            prod(&m, &sa, |x| x.a),
            prod(&k, &sa, |x| x.a),
            prod(&nn, &sb, |x| x.b),
        );
        let a_is_const = self.const_of(ia).is_some();
        let b_is_const = self.const_of(ib).is_some();
        // Output physical order and its logical positions.
        let (flat, order): (TId, Vec<Ax>) = if batch.is_empty() && (b_is_const || a_is_const) {
            let (xo, wo, xrows, wrows, xsz, wsz, rows, cols) = if b_is_const {
                (ia, ib, &m, &nn, &sa, &sb, mm, nsz)
            } else {
                (ib, ia, &nn, &m, &sb, &sa, nsz, mm)
            };
            let x_is_a = b_is_const;
            let pick = |x: &Ax, is_a: bool| if is_a { x.a } else { x.b };
            let mut want_x: Vec<usize> = xrows.iter().filter_map(|x| pick(x, x_is_a)).collect();
            want_x.extend(k.iter().filter_map(|x| pick(x, x_is_a)));
            want_x.extend(if x_is_a { &a_rest } else { &b_rest });
            let mut want_w: Vec<usize> = wrows.iter().filter_map(|x| pick(x, !x_is_a)).collect();
            want_w.extend(k.iter().filter_map(|x| pick(x, !x_is_a)));
            want_w.extend(if x_is_a { &b_rest } else { &a_rest });
            let _ = (xsz, wsz);
            let xt = self.act(xo, &want_x)?;
            let xt = self.reshape(xt, vec![rows, kk], format!("{name}.rows"));
            let wk = self
                .const_of(wo)
                .ok_or_else(|| anyhow!("weights not constant"))?;
            let (_, wdata) = permute(&self.shape(wo)?, &tensor_f32(&wk)?, &want_w);
            let wt = self
                .g
                .add_const_f32(format!("{name}.weights"), vec![cols, kk], wdata);
            let y = self.new_tensor(format!("{name}.flat"), vec![rows, cols]);
            self.g.push(Node::new(
                name.clone(),
                OpParams::Dense(kops::DenseParams::default()),
                vec![Some(xt), Some(wt), None],
                vec![y],
            ));
            let mut order = xrows.clone();
            order.extend(wrows.iter().copied());
            (y, order)
        } else {
            let mut want_a: Vec<usize> = batch.iter().filter_map(|x| x.a).collect();
            want_a.extend(m.iter().filter_map(|x| x.a));
            want_a.extend(k.iter().filter_map(|x| x.a));
            want_a.extend(&a_rest);
            let mut want_b: Vec<usize> = batch.iter().filter_map(|x| x.b).collect();
            want_b.extend(k.iter().filter_map(|x| x.b));
            want_b.extend(nn.iter().filter_map(|x| x.b));
            want_b.extend(&b_rest);
            let at = self.act(ia, &want_a)?;
            let bt = self.act(ib, &want_b)?;
            let mut ashape: Vec<usize> = batch.iter().map(|x| x.a.map_or(1, |i| sa[i])).collect();
            ashape.extend([mm, kk]);
            let mut bshape: Vec<usize> = batch.iter().map(|x| x.b.map_or(1, |i| sb[i])).collect();
            bshape.extend([kk, nsz]);
            let mut yshape: Vec<usize> = batch.iter().map(size).collect();
            yshape.extend([mm, nsz]);
            if yshape.len() > 6 {
                bail!("einsum with more than 4 batch axes");
            }
            let at = self.reshape(at, ashape, format!("{name}.a"));
            let bt = self.reshape(bt, bshape, format!("{name}.b"));
            let y = self.new_tensor(format!("{name}.flat"), yshape);
            self.g.push(Node::new(
                name.clone(),
                OpParams::MatMul(kops::MatMulParams::default()),
                vec![Some(at), Some(bt), None],
                vec![y],
            ));
            let mut order = batch.clone();
            order.extend(m.iter().copied());
            order.extend(nn.iter().copied());
            (y, order)
        };
        let mut perm: Vec<usize> = order.iter().filter_map(|x| x.o).collect();
        perm.extend(&o_only);
        let phys: Vec<usize> = perm.iter().map(|&l| so[l]).collect();
        let y = self.reshape(flat, phys, name);
        self.set_act(node, y, perm);
        Ok(())
    }
}
