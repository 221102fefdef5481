//! TFLite operators: one table of every builtin code kiln knows, with the importer method of the
//! ones it converts; each method handles the float and the int8 form of its operators.

use super::{Importer, TfOp};
use crate::ir::{pool_op, Data, Node, TId};
use anyhow::{anyhow, bail, Result};
use kiln_quantize::requant::{
    add_params, logistic, lut_i8, mean_params, mul_params, softmax_params,
};
use kiln_runtime::format::MAX_RANK;
use kiln_runtime::ops::{
    Act, AddQuant, BinaryKind, BinaryParams, BinaryQuant, ConcatParams, ConvGeom, ConvParams,
    DenseParams, DequantizeParams, LutParams, MeanQuant, MulQuant, OpParams, PadMode, PadParams,
    PoolParams, PreluParams, QuantizeParams, ReduceParams, Reducer, ReshapeParams, Rounding,
    SliceParams, SoftmaxParams, SoftmaxQuant, TransposeConvParams, TransposeParams, UnaryKind,
    UnaryParams,
};
use kiln_runtime::{DType, Quant};

/// How kiln imports an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Conv,
    FullyConnected,
    Pool,
    Binary,
    Unary,
    Softmax,
    Reduce,
    Concat,
    Pad,
    Transpose,
    StridedSlice,
    Reshape,
    Quantize,
    Dequantize,
    Prelu,
    TransposeConv,
    Tile,
    Split,
    Resize,
    SequenceLstm,
}

/// The operator table: `code NAME => Family;` for the operators kiln imports, `code NAME;` for
/// the ones it only names in errors (every builtin of the TFLite schema up to 161; later codes
/// are StableHLO ops, named `BUILTIN_<code>`). It generates the `code` constants and [`OPS`].
macro_rules! tflite_ops {
    ($($code:literal $name:ident $(=> $family:ident)?;)*) => {
        /// TFLite builtin operator codes (schema.fbs `BuiltinOperator`).
        #[allow(missing_docs, dead_code)]
        pub mod code {
            $(pub const $name: i32 = $code;)*
        }
        /// `(code, name, family)` of every builtin kiln knows by name.
        const OPS: &[(i32, &str, Option<Family>)] =
            &[$(($code, stringify!($name), tflite_ops!(@family $($family)?)),)*];
    };
    (@family) => { None };
    (@family $f:ident) => { Some(Family::$f) };
}

tflite_ops! {
    0 ADD => Binary;
    1 AVERAGE_POOL_2D => Pool;
    2 CONCATENATION => Concat;
    3 CONV_2D => Conv;
    4 DEPTHWISE_CONV_2D => Conv;
    5 DEPTH_TO_SPACE;
    6 DEQUANTIZE => Dequantize;
    7 EMBEDDING_LOOKUP;
    8 FLOOR => Unary;
    9 FULLY_CONNECTED => FullyConnected;
    10 HASHTABLE_LOOKUP;
    11 L2_NORMALIZATION;
    12 L2_POOL_2D;
    13 LOCAL_RESPONSE_NORMALIZATION;
    14 LOGISTIC => Unary;
    15 LSH_PROJECTION;
    16 LSTM;
    17 MAX_POOL_2D => Pool;
    18 MUL => Binary;
    19 RELU => Unary;
    20 RELU_N1_TO_1 => Unary;
    21 RELU6 => Unary;
    22 RESHAPE => Reshape;
    23 RESIZE_BILINEAR => Resize;
    24 RNN;
    25 SOFTMAX => Softmax;
    26 SPACE_TO_DEPTH;
    27 SVDF;
    28 TANH => Unary;
    29 CONCAT_EMBEDDINGS;
    30 SKIP_GRAM;
    31 CALL;
    32 CUSTOM;
    33 EMBEDDING_LOOKUP_SPARSE;
    34 PAD => Pad;
    35 UNIDIRECTIONAL_SEQUENCE_RNN;
    36 GATHER;
    37 BATCH_TO_SPACE_ND;
    38 SPACE_TO_BATCH_ND;
    39 TRANSPOSE => Transpose;
    40 MEAN => Reduce;
    41 SUB => Binary;
    42 DIV => Binary;
    43 SQUEEZE => Reshape;
    44 UNIDIRECTIONAL_SEQUENCE_LSTM => SequenceLstm;
    45 STRIDED_SLICE => StridedSlice;
    46 BIDIRECTIONAL_SEQUENCE_RNN;
    47 EXP => Unary;
    48 TOPK_V2;
    49 SPLIT => Split;
    50 LOG_SOFTMAX;
    51 DELEGATE;
    52 BIDIRECTIONAL_SEQUENCE_LSTM;
    53 CAST;
    54 PRELU => Prelu;
    55 MAXIMUM => Binary;
    56 ARG_MAX;
    57 MINIMUM => Binary;
    58 LESS;
    59 NEG => Unary;
    60 PADV2 => Pad;
    61 GREATER;
    62 GREATER_EQUAL;
    63 LESS_EQUAL;
    64 SELECT;
    65 SLICE;
    66 SIN => Unary;
    67 TRANSPOSE_CONV => TransposeConv;
    68 SPARSE_TO_DENSE;
    69 TILE => Tile;
    70 EXPAND_DIMS => Reshape;
    71 EQUAL;
    72 NOT_EQUAL;
    73 LOG => Unary;
    74 SUM => Reduce;
    75 SQRT => Unary;
    76 RSQRT => Unary;
    77 SHAPE;
    78 POW => Binary;
    79 ARG_MIN;
    80 FAKE_QUANT;
    81 REDUCE_PROD => Reduce;
    82 REDUCE_MAX => Reduce;
    83 PACK;
    84 LOGICAL_OR;
    85 ONE_HOT;
    86 LOGICAL_AND;
    87 LOGICAL_NOT;
    88 UNPACK => Split;
    89 REDUCE_MIN => Reduce;
    90 FLOOR_DIV;
    91 REDUCE_ANY;
    92 SQUARE => Unary;
    93 ZEROS_LIKE;
    94 FILL;
    95 FLOOR_MOD;
    96 RANGE;
    97 RESIZE_NEAREST_NEIGHBOR => Resize;
    98 LEAKY_RELU => Unary;
    99 SQUARED_DIFFERENCE => Binary;
    100 MIRROR_PAD;
    101 ABS => Unary;
    102 SPLIT_V => Split;
    103 UNIQUE;
    104 CEIL => Unary;
    105 REVERSE_V2;
    106 ADD_N;
    107 GATHER_ND;
    108 COS => Unary;
    109 WHERE;
    110 RANK;
    111 ELU => Unary;
    112 REVERSE_SEQUENCE;
    113 MATRIX_DIAG;
    114 QUANTIZE => Quantize;
    115 MATRIX_SET_DIAG;
    116 ROUND => Unary;
    117 HARD_SWISH => Unary;
    118 IF;
    119 WHILE;
    120 NON_MAX_SUPPRESSION_V4;
    121 NON_MAX_SUPPRESSION_V5;
    122 SCATTER_ND;
    123 SELECT_V2;
    124 DENSIFY;
    125 SEGMENT_SUM;
    126 BATCH_MATMUL;
    127 PLACEHOLDER_FOR_GREATER_OP_CODES;
    128 CUMSUM;
    129 CALL_ONCE;
    130 BROADCAST_TO;
    131 RFFT2D;
    132 CONV_3D;
    133 IMAG;
    134 REAL;
    135 COMPLEX_ABS;
    136 HASHTABLE;
    137 HASHTABLE_FIND;
    138 HASHTABLE_IMPORT;
    139 HASHTABLE_SIZE;
    140 REDUCE_ALL;
    141 CONV_3D_TRANSPOSE;
    142 VAR_HANDLE;
    143 READ_VARIABLE;
    144 ASSIGN_VARIABLE;
    145 BROADCAST_ARGS;
    146 RANDOM_STANDARD_NORMAL;
    147 BUCKETIZE;
    148 RANDOM_UNIFORM;
    149 MULTINOMIAL;
    150 GELU => Unary;
    151 DYNAMIC_UPDATE_SLICE;
    152 RELU_0_TO_1;
    153 UNSORTED_SEGMENT_PROD;
    154 UNSORTED_SEGMENT_MAX;
    155 UNSORTED_SEGMENT_SUM;
    156 ATAN2;
    157 UNSORTED_SEGMENT_MIN;
    158 SIGN => Unary;
    159 BITCAST;
    160 BITWISE_XOR;
    161 RIGHT_SHIFT;
}

use code::*;

/// Name of a builtin code, for error messages.
pub fn op_name(c: i32) -> String {
    OPS.iter()
        .find(|r| r.0 == c)
        .map_or(format!("BUILTIN_{c}"), |r| r.1.to_string())
}

/// How kiln imports builtin `c`, if it does.
pub(super) fn family(c: i32) -> Option<Family> {
    OPS.iter().find(|r| r.0 == c).and_then(|r| r.2)
}

/// Explicit (before, after) padding and output size for TF's SAME/VALID along one axis.
fn tf_padding(
    input: usize,
    k: usize,
    stride: usize,
    dil: usize,
    same: bool,
) -> (usize, usize, usize) {
    let extent = (k - 1) * dil + 1;
    if same {
        let out = input.div_ceil(stride);
        let needed = ((out - 1) * stride + extent).saturating_sub(input);
        (needed / 2, needed - needed / 2, out)
    } else {
        (0, 0, (input.saturating_sub(extent)) / stride + 1)
    }
}

impl<'a> Importer<'a> {
    /// Appends a one-input op `x -> y`.
    fn push1(&mut self, name: String, op: OpParams, x: TId, y: TId) -> Result<()> {
        self.g.push(Node::new(name, op, vec![Some(x)], vec![y]));
        Ok(())
    }

    pub(super) fn convert(&mut self, o: &TfOp<'a>) -> Result<()> {
        let name = self.name_of(o);
        let min_inputs = match o.code {
            STRIDED_SLICE => 4,
            CONV_2D | DEPTHWISE_CONV_2D | FULLY_CONNECTED | ADD | SUB | MUL | DIV | MAXIMUM
            | MINIMUM | SQUARED_DIFFERENCE | POW | PRELU | MEAN | SUM | REDUCE_MAX | REDUCE_MIN
            | REDUCE_PROD | PAD | PADV2 | TRANSPOSE => 2,
            TRANSPOSE_CONV => 3,
            TILE => 2,
            SPLIT => 2,
            SPLIT_V => 3,
            RESIZE_BILINEAR | RESIZE_NEAREST_NEIGHBOR => 2,
            UNIDIRECTIONAL_SEQUENCE_LSTM => 20,
            _ => 1,
        };
        if o.inputs.len() < min_inputs || o.outputs.is_empty() {
            bail!(
                "{} '{name}' has {} inputs and {} outputs; it needs at least {min_inputs} inputs and 1 output",
                op_name(o.code),
                o.inputs.len(),
                o.outputs.len()
            );
        }
        let Some(family) = family(o.code) else {
            bail!("unsupported operator {}", op_name(o.code));
        };
        match family {
            Family::Conv => self.conv(o, name),
            Family::FullyConnected => self.fully_connected(o, name),
            Family::Pool => self.pool(o, name),
            Family::Binary => self.binary(o, name),
            Family::Unary => self.unary(o, name),
            Family::Softmax => self.softmax(o, name),
            Family::Reduce => self.reduce(o, name),
            Family::Concat => self.concat(o, name),
            Family::Pad => self.pad(o, name),
            Family::Transpose => self.transpose(o, name),
            Family::StridedSlice => self.strided_slice(o, name),
            Family::Reshape => self.reshape(o, name),
            Family::Quantize => self.quantize(o, name),
            Family::Dequantize => self.dequantize(o, name),
            Family::Prelu => self.prelu(o, name),
            Family::TransposeConv => self.transpose_conv(o, name),
            Family::Tile => self.tile(o, name),
            Family::Split => self.split(o, name),
            Family::Resize => self.resize(o, name),
            Family::SequenceLstm => self.sequence_lstm(o, name),
        }
    }

    /// Float conv operands `x, w (OHWI), bias?` and the output; depthwise weights
    /// `[1, KH, KW, O]` become `[O, KH, KW, 1]`.
    fn float_conv_operands(
        &mut self,
        o: &TfOp<'a>,
        depthwise: bool,
        name: &str,
    ) -> Result<(usize, usize, Vec<Option<usize>>)> {
        let x = self.input(o, 0)?;
        let w_tf = self.input(o, 1)?;
        let bias = match o.inputs.get(2) {
            Some(&b) if b >= 0 => Some(self.tensor(b as usize)?),
            _ => None,
        };
        let y = self.out(o)?;
        let (xs, ws) = (self.shape(x), self.shape(w_tf));
        if xs.len() != 4 || ws.len() != 4 {
            bail!("expects 4-D input and weights, got {xs:?} and {ws:?}");
        }
        if !depthwise {
            return Ok((x, y, vec![Some(x), Some(w_tf), bias]));
        }
        let (kh, kw, co) = (ws[1], ws[2], ws[3]);
        let src = self
            .g
            .const_f32(w_tf)
            .ok_or_else(|| anyhow!("depthwise weights must be constant"))?
            .to_vec();
        let mut dst = vec![0.0; src.len()];
        for ky in 0..kh {
            for kx in 0..kw {
                for c in 0..co {
                    dst[(c * kh + ky) * kw + kx] = src[(ky * kw + kx) * co + c];
                }
            }
        }
        let w = self
            .g
            .add_const_f32(format!("{name}.weights_ohwi"), vec![co, kh, kw, 1], dst);
        Ok((x, y, vec![Some(x), Some(w), bias]))
    }

    fn conv(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let opt = self.opt(o)?;
        let depthwise = o.code == DEPTHWISE_CONV_2D;
        let int8 = self.is_int8(o.inputs[0]);
        let (x, y, ins) = if int8 {
            self.int8_weighted(o, depthwise)?
        } else {
            self.float_conv_operands(o, depthwise, &name)?
        };
        let xs = self.shape_of_rank(x, 4, "input")?;
        let wk = self.shape_of_rank(ins[1].unwrap_or(0), 4, "weights")?;
        let ys = self.shape(y);
        let same = opt.u8(0, 0)? == 0;
        let sw = opt.i32(1, 1)?.max(1) as usize;
        let sh = opt.i32(2, 1)?.max(1) as usize;
        // Depthwise options carry a depth multiplier before the activation.
        let f = if depthwise { 4 } else { 3 };
        let act = opt.u8(f, 0)?;
        let dw = opt.i32(f + 1, 1)?.max(1) as usize;
        let dh = opt.i32(f + 2, 1)?.max(1) as usize;
        if !depthwise && xs[3] % wk[3].max(1) != 0 {
            bail!(
                "input channels {} are not a multiple of the weights' {}",
                xs[3],
                wk[3]
            );
        }
        let groups = if depthwise {
            xs[3]
        } else {
            xs[3] / wk[3].max(1)
        };
        let (pt, pb, oh) = tf_padding(xs[1], wk[1], sh, dh, same);
        let (pl, pr, ow) = tf_padding(xs[2], wk[2], sw, dw, same);
        if ys != [xs[0], oh, ow, wk[0]] {
            bail!(
                "output shape {ys:?} does not match the conv arithmetic [{}, {oh}, {ow}, {}]",
                xs[0],
                wk[0]
            );
        }
        let geom = ConvGeom {
            stride: [sh, sw],
            dilation: [dh, dw],
            pad: [pt, pl, pb, pr],
            groups,
        };
        let mut p = ConvParams::new(geom);
        if !int8 {
            let node = Node::new(name, OpParams::Conv2d(p), ins, vec![y]);
            return self.push_with_act(node, act);
        }
        let (lo, hi) = self.int8_act(y, act)?;
        p.act = Act::Int8 { lo, hi };
        self.g
            .push(Node::new(name, OpParams::Conv2d(p), ins, vec![y]));
        Ok(())
    }

    /// TRANSPOSE_CONV: inputs `output_shape, weights [O, KH, KW, I], x, bias?`. The padding is
    /// TFLite's: that of the forward conv from the output back to the input (top/left get the
    /// smaller half).
    fn transpose_conv(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let opt = self.opt(o)?;
        let same = opt.u8(0, 0)? == 0;
        let sw = opt.i32(1, 1)?.max(1) as usize;
        let sh = opt.i32(2, 1)?.max(1) as usize;
        let act = opt.u8(3, 0)?;
        let x = self.input(o, 2)?;
        let y = self.out(o)?;
        let int8 = self.is_int8(o.inputs[2]);
        let bias_t = o.inputs.get(3).copied().unwrap_or(-1);
        let ins = if int8 {
            let wt = o.inputs[1];
            if wt < 0 {
                bail!("the weights input is absent");
            }
            let (w, scales) = self.int8_weights(wt as usize, false)?;
            let bias = self.int32_bias(bias_t)?;
            let (mult, shift) =
                kiln_quantize::requant::conv_multipliers(self.q_scale(x), &scales, self.q_scale(y));
            let m = self.g.add_const_i32(format!("{name}.multiplier"), mult);
            let s = self.g.add_const_i32(format!("{name}.shift"), shift);
            vec![Some(x), Some(w), bias, Some(m), Some(s)]
        } else {
            let w = self.input(o, 1)?;
            let bias = if bias_t >= 0 {
                Some(self.tensor(bias_t as usize)?)
            } else {
                None
            };
            vec![Some(x), Some(w), bias]
        };
        let xs = self.shape_of_rank(x, 4, "input")?;
        let ws = self.shape_of_rank(ins[1].unwrap_or(0), 4, "weights")?;
        let ys = self.shape_of_rank(y, 4, "output")?;
        if ws[3] != xs[3] || ys[0] != xs[0] || ys[3] != ws[0] {
            bail!("input {xs:?}, weights {ws:?} and output {ys:?} do not fit a transposed conv");
        }
        let pad = |out: usize, k: usize, s: usize| -> usize {
            // TFLite's ComputePaddingWithOffset for the conv from `out` back to the input.
            let back = if same {
                out.div_ceil(s)
            } else {
                (out + s).saturating_sub(k) / s
            };
            ((back.max(1) - 1) * s + k).saturating_sub(out) / 2
        };
        let geom = ConvGeom {
            stride: [sh, sw],
            dilation: [1, 1],
            pad: [pad(ys[1], ws[1], sh), pad(ys[2], ws[2], sw), 0, 0],
            groups: 1,
        };
        let mut p = TransposeConvParams {
            geom,
            act: Act::NONE,
            rounding: Rounding::Double,
        };
        if !int8 {
            let node = Node::new(name, OpParams::TransposeConv(p), ins, vec![y]);
            return self.push_with_act(node, act);
        }
        let (lo, hi) = self.int8_act(y, act)?;
        p.act = Act::Int8 { lo, hi };
        self.g
            .push(Node::new(name, OpParams::TransposeConv(p), ins, vec![y]));
        Ok(())
    }

    /// TILE with constant multiples: one gather per repeated axis ([`crate::ir::Graph::tile`]);
    /// int8 keeps its quantization (TFLite requires the output's to be the input's).
    fn tile(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let reps = self.const_ints(o.inputs[1])?;
        let (xs, ys) = (self.shape(x), self.shape(y));
        let fits = reps.len() == xs.len()
            && xs.len() == ys.len()
            && reps
                .iter()
                .zip(xs.iter().zip(&ys))
                .all(|(&r, (&a, &b))| r >= 1 && a * r as usize == b);
        if !fits {
            bail!("TILE of {xs:?} by {reps:?} does not give the output {ys:?}");
        }
        if self.g.tensors[x].dtype == DType::I8
            && self.g.tensors[x].quant != self.g.tensors[y].quant
        {
            bail!("int8 TILE with different input and output quantization");
        }
        let reps: Vec<usize> = reps.iter().map(|&r| r as usize).collect();
        self.g.tile(x, &reps, &name, Some(y));
        Ok(())
    }

    /// SPLIT (`axis, x`), SPLIT_V (`x, sizes, axis`) and UNPACK (`x`, axis in the options): one
    /// slice per output along the axis, each output's size from its tensor; UNPACK then drops
    /// the axis (a free reshape). The unrolled Keras LSTM/GRU cell splits its gates this way.
    fn split(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let (x, axis) = match o.code {
            SPLIT => (self.input(o, 1)?, self.const_ints(o.inputs[0])?),
            SPLIT_V => (self.input(o, 0)?, self.const_ints(o.inputs[2])?),
            _ => (self.input(o, 0)?, vec![self.opt(o)?.i32(1, 0)? as i64]),
        };
        let xs = self.shape(x);
        let r = xs.len() as i64;
        let axis = match axis[..] {
            [a] if (-r..r).contains(&a) => a.rem_euclid(r.max(1)) as usize,
            _ => bail!(
                "{} axis {axis:?} does not fit a rank-{r} input",
                op_name(o.code)
            ),
        };
        if xs.len() > MAX_RANK {
            bail!(
                "{} of a rank-{r} tensor (at most {MAX_RANK})",
                op_name(o.code)
            );
        }
        let mut begin = 0usize;
        for (k, &t) in o.outputs.iter().enumerate() {
            if t < 0 {
                bail!("output {k} of {} is absent", op_name(o.code));
            }
            let y = self.activation(t as usize)?;
            let ys = self.shape(y);
            // The slice keeps the axis; UNPACK's output drops it.
            let mut part = xs.clone();
            part[axis] = if o.code == UNPACK {
                1
            } else {
                ys.get(axis).copied().unwrap_or(0)
            };
            let kept: Vec<usize> = part.iter().copied().filter(|&d| d != 1).collect();
            let fits = if o.code == UNPACK {
                ys.iter().product::<usize>() == part.iter().product::<usize>()
                    && ys
                        .iter()
                        .copied()
                        .filter(|&d| d != 1)
                        .eq(kept.iter().copied())
            } else {
                ys == part
            };
            if !fits || begin + part[axis] > xs[axis] {
                bail!(
                    "output {k} of {} has shape {ys:?}, which is not a piece of {xs:?} along axis {axis}",
                    op_name(o.code)
                );
            }
            let mut sp = SliceParams::default();
            sp.begin[axis] = begin as i32;
            begin += part[axis];
            let pname = format!("{name}.{k}");
            let p = if part == ys {
                y
            } else {
                let (dtype, quant) = (self.g.tensors[x].dtype, self.g.tensors[x].quant);
                let p = self.g.add_tensor(pname.clone(), dtype, part);
                self.g.tensors[p].quant = quant;
                p
            };
            self.g.push(Node::new(
                pname.clone(),
                OpParams::Slice(sp),
                vec![Some(x)],
                vec![p],
            ));
            if p != y {
                let rs = OpParams::Reshape(ReshapeParams);
                self.g.push(Node::new(
                    format!("{pname}.unpack"),
                    rs,
                    vec![Some(p)],
                    vec![y],
                ));
            }
        }
        if begin != xs[axis] {
            bail!(
                "the outputs of {} cover {begin} of the {} entries of axis {axis}",
                op_name(o.code),
                xs[axis]
            );
        }
        Ok(())
    }

    /// RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR (`x, size`): kiln's resize with TFLite's
    /// coordinates (align_corners, half_pixel_centers); the output size from the output tensor,
    /// checked against the constant size input.
    fn resize(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        use kiln_runtime::ops::{NearestRounding, ResizeParams, Transform};
        let opt = self.opt(o)?;
        let bilinear = o.code == RESIZE_BILINEAR;
        // ResizeBilinearOptions keeps two deprecated fields first.
        let f = if bilinear { 2 } else { 0 };
        let (align, half) = (opt.bool(f, false)?, opt.bool(f + 1, false)?);
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let (xs, ys) = (self.shape(x), self.shape(y));
        let size = self.const_ints(o.inputs[1])?;
        if xs.len() != 4 || ys.len() != 4 || size.len() != 2 {
            bail!(
                "{} expects 4-D input and output and a 2-value size",
                op_name(o.code)
            );
        }
        if size != [ys[1] as i64, ys[2] as i64] || ys[0] != xs[0] || ys[3] != xs[3] {
            bail!(
                "{} of {xs:?} to size {size:?} does not give the output {ys:?}",
                op_name(o.code)
            );
        }
        if self.g.tensors[x].dtype == DType::I8
            && self.g.tensors[x].quant != self.g.tensors[y].quant
        {
            bail!(
                "int8 {} with different input and output quantization",
                op_name(o.code)
            );
        }
        let transform = if half {
            Transform::TfHalfPixel
        } else if align {
            Transform::TfAlignCorners
        } else {
            Transform::TfAsymmetric
        };
        let p = ResizeParams {
            bilinear,
            transform,
            rounding: if align {
                NearestRounding::HalfAway
            } else {
                NearestRounding::Floor
            },
            scale: [1.0, 1.0],
        };
        self.push1(name, OpParams::Resize(p), x, y)
    }

    /// UNIDIRECTIONAL_SEQUENCE_LSTM (Keras 2's fused LSTM), float: written out step by step
    /// ([`crate::rnn::lstm`]) from zero state, as TFLite starts its variable state tensors.
    /// Coupled input-forget gates and a cell clip are supported; peepholes, projection and
    /// layer-normalized cells are refused by name.
    fn sequence_lstm(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let present = |k: usize| o.inputs.get(k).is_some_and(|&t| t >= 0);
        if self.is_int8(o.inputs[0]) {
            bail!("int8 UNIDIRECTIONAL_SEQUENCE_LSTM is not supported (float LSTM is)");
        }
        for (k, what) in [
            (9, "peephole"),
            (16, "projection"),
            (20, "layer-normalized"),
        ] {
            if present(k) || (k == 20 && (21..24).any(present)) {
                bail!("an LSTM with {what} weights is not supported");
            }
        }
        let opt = self.opt(o)?;
        let act = match opt.u8(0, 4)? {
            4 => UnaryParams::new(UnaryKind::Tanh),
            1 => UnaryParams::new(UnaryKind::Relu),
            3 => UnaryParams {
                kind: UnaryKind::Clip,
                a: 0.0,
                b: 6.0,
            },
            a => bail!("LSTM activation {a} is not supported (tanh, relu, relu6 are)"),
        };
        let cell_clip = opt.f32(1, 0.0)?;
        let time_major = opt.bool(3, false)?;
        let cifg = !present(1);
        let weights = |imp: &Self, k: usize| -> Result<Vec<f32>> {
            let t = super::input_index(o, k)?;
            if !imp.is_const(t) {
                bail!("LSTM weights must be constants");
            }
            imp.const_f32(t)
        };
        let gate_ks: &[usize] = if cifg { &[2, 3, 4] } else { &[1, 2, 3, 4] };
        let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for &k in gate_ks {
            w.extend(weights(self, k)?);
            r.extend(weights(self, k + 4)?);
            b.extend(weights(self, k + 11)?);
        }
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let (xs, ys) = (self.shape(x), self.shape(y));
        let gates = gate_ks.len();
        let cells = b.len() / gates;
        let k = xs.get(2).copied().unwrap_or(0);
        let fits = xs.len() == 3
            && b.len() == gates * cells
            && w.len() == gates * cells * k
            && r.len() == gates * cells * cells
            && ys.len() == 3
            && ys[..2] == xs[..2]
            && ys[2] == cells;
        if !fits {
            bail!("LSTM input {xs:?}, output {ys:?} and weights of {cells} cells do not fit");
        }
        let steps = xs[if time_major { 0 } else { 1 }];
        if steps > crate::rnn::MAX_STEPS {
            bail!(
                "an LSTM over {steps} steps is not supported (kiln unrolls at most {})",
                crate::rnn::MAX_STEPS
            );
        }
        let l = crate::rnn::Lstm {
            cells,
            w,
            r,
            b,
            cifg,
            act,
            cell_clip,
        };
        crate::rnn::lstm(&mut self.g, &name, x, time_major, &l, y);
        Ok(())
    }

    fn fully_connected(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let opt = self.opt(o)?;
        if opt.u8(1, 0)? != 0 {
            bail!("shuffled weight formats are not supported");
        }
        let int8 = self.is_int8(o.inputs[0]);
        let (x, y, mut ins) = if int8 {
            self.int8_weighted(o, false)?
        } else {
            let x = self.input(o, 0)?;
            let w = self.input(o, 1)?;
            let bias = match o.inputs.get(2) {
                Some(&b) if b >= 0 => Some(self.tensor(b as usize)?),
                _ => None,
            };
            (x, self.out(o)?, vec![Some(x), Some(w), bias])
        };
        let ws = self.shape_of_rank(ins[1].unwrap_or(0), 2, "weights")?;
        let (m, k) = (ws[0], ws[1]);
        if k == 0 {
            bail!("weights have zero input features");
        }
        let xs = self.shape(x);
        let n: usize = xs.iter().product();
        if !n.is_multiple_of(k) {
            bail!("input {xs:?} cannot be flattened into rows of {k}");
        }
        let rows = n / k;
        let dtype = if int8 { DType::I8 } else { DType::F32 };
        if xs != [rows, k] {
            let t = self
                .g
                .add_tensor(format!("{name}.flat"), dtype, vec![rows, k]);
            self.g.tensors[t].quant = self.g.tensors[x].quant;
            self.g.push(Node::new(
                format!("{name}.flatten"),
                OpParams::Reshape(ReshapeParams),
                vec![Some(x)],
                vec![t],
            ));
            ins[0] = Some(t);
        }
        let y2 = if self.shape(y) != [rows, m] {
            let t = self
                .g
                .add_tensor(format!("{name}.rows"), dtype, vec![rows, m]);
            self.g.tensors[t].quant = self.g.tensors[y].quant;
            t
        } else {
            y
        };
        let act = opt.u8(0, 0)?;
        if int8 {
            let (lo, hi) = self.int8_act(y, act)?;
            // LiteRT's reference FULLY_CONNECTED rescales with a single rounding (conv and the
            // rest use gemmlowp's double rounding); matching it keeps kiln bit-exact.
            let p = DenseParams {
                act: Act::Int8 { lo, hi },
                rounding: Rounding::Single,
                packed: false,
                sparse: false,
            };
            self.g
                .push(Node::new(name.clone(), OpParams::Dense(p), ins, vec![y2]));
        } else {
            let node = Node::new(
                name.clone(),
                OpParams::Dense(DenseParams::default()),
                ins,
                vec![y2],
            );
            self.push_with_act(node, act)?;
        }
        if y2 != y {
            self.g.push(Node::new(
                format!("{name}.unflatten"),
                OpParams::Reshape(ReshapeParams),
                vec![Some(y2)],
                vec![y],
            ));
        }
        Ok(())
    }

    fn pool(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let opt = self.opt(o)?;
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let int8 = self.is_int8(o.inputs[0]);
        if int8 && self.g.tensors[x].quant != self.g.tensors[y].quant {
            bail!("int8 pooling must keep the input's scale and zero point");
        }
        let xs = self.shape_of_rank(x, 4, "input")?;
        let same = opt.u8(0, 0)? == 0;
        let (sw, sh) = (
            opt.i32(1, 1)?.max(1) as usize,
            opt.i32(2, 1)?.max(1) as usize,
        );
        let (kw, kh) = (
            opt.i32(3, 1)?.max(1) as usize,
            opt.i32(4, 1)?.max(1) as usize,
        );
        let (pt, pb, _) = tf_padding(xs[1], kh, sh, 1, same);
        let (pl, pr, _) = tf_padding(xs[2], kw, sw, 1, same);
        let mut p = PoolParams::new([kh, kw], [sh, sw]);
        p.window.pad = [pt, pl, pb, pr];
        let act = opt.u8(5, 0)?;
        let max = o.code == MAX_POOL_2D;
        if !int8 {
            let node = Node::new(name, pool_op(max, p), vec![Some(x)], vec![y]);
            return self.push_with_act(node, act);
        }
        let (lo, hi) = self.int8_act(y, act)?;
        p.act = Act::Int8 { lo, hi };
        self.push1(name, pool_op(max, p), x, y)
    }

    fn binary(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let kind = match o.code {
            ADD => BinaryKind::Add,
            SUB => BinaryKind::Sub,
            MUL => BinaryKind::Mul,
            DIV => BinaryKind::Div,
            MAXIMUM => BinaryKind::Max,
            POW => BinaryKind::Pow,
            SQUARED_DIFFERENCE => BinaryKind::Sub,
            _ => BinaryKind::Min,
        };
        let int8 = self.is_int8(o.inputs[0]);
        let both_int8 = int8 && self.is_int8(*o.inputs.get(1).unwrap_or(&-1));
        // An int8 constant operand (Keras' BatchNormalization after an activation becomes MUL
        // and ADD by per-channel int8 constants) stays int8 with its own quantization.
        let (a, b) = if both_int8 {
            (self.int8_operand(o, 0)?, self.int8_operand(o, 1)?)
        } else {
            (self.input(o, 0)?, self.input(o, 1)?)
        };
        let y = self.out(o)?;
        let act = match o.options {
            Some(t) if !matches!(o.code, MAXIMUM | MINIMUM) => t.u8(0, 0)?,
            _ => 0,
        };
        if o.code == SQUARED_DIFFERENCE {
            // (a - b)²: a subtraction, then a square (float; Keras' LayerNormalization).
            if int8 {
                bail!("int8 SQUARED_DIFFERENCE is not supported (float only)");
            }
            let d = self
                .g
                .add_tensor(format!("{name}.diff"), DType::F32, self.shape(y));
            let p = OpParams::Binary(BinaryParams::new(BinaryKind::Sub));
            self.g.push(Node::new(
                format!("{name}.diff"),
                p,
                vec![Some(a), Some(b)],
                vec![d],
            ));
            let sq = OpParams::Unary(UnaryParams::new(UnaryKind::Square));
            return self.push1(name, sq, d, y);
        }
        if !int8 || !matches!(kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) {
            let p = OpParams::Binary(BinaryParams::new(kind));
            let node = Node::new(name, p, vec![Some(a), Some(b)], vec![y]);
            return self.push_with_act(node, act);
        }
        if self.g.tensors[b].dtype != DType::I8 {
            bail!("int8 {} needs two int8 operands", op_name(o.code));
        }
        let (lo, hi) = self.int8_act(y, act)?;
        let (sa, sb, sy) = (self.q_scale(a), self.q_scale(b), self.q_scale(y));
        let quant = if kind == BinaryKind::Mul {
            let (multiplier, shift) = mul_params(sa, sb, sy);
            BinaryQuant::Mul(MulQuant {
                multiplier,
                shift,
                rounding: Rounding::Double,
            })
        } else {
            let (left_shift, mult) = add_params(sa, sb, sy);
            BinaryQuant::Add(AddQuant { left_shift, mult })
        };
        let p = BinaryParams {
            kind,
            act: Act::Int8 { lo, hi },
            quant,
        };
        self.g.push(Node::new(
            name,
            OpParams::Binary(p),
            vec![Some(a), Some(b)],
            vec![y],
        ));
        Ok(())
    }

    fn unary(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        if self.is_int8(o.inputs[0]) {
            return self.lookup_table(o, name, x, y);
        }
        let (kind, a, b) = match o.code {
            RELU => (UnaryKind::Relu, 0.0, 0.0),
            RELU6 => (UnaryKind::Clip, 0.0, 6.0),
            RELU_N1_TO_1 => (UnaryKind::Clip, -1.0, 1.0),
            LOGISTIC => (UnaryKind::Sigmoid, 0.0, 0.0),
            TANH => (UnaryKind::Tanh, 0.0, 0.0),
            LEAKY_RELU => (UnaryKind::LeakyRelu, self.opt(o)?.f32(0, 0.0)?, 0.0),
            HARD_SWISH => (UnaryKind::HardSwish, 0.0, 0.0),
            EXP => (UnaryKind::Exp, 0.0, 0.0),
            ABS => (UnaryKind::Abs, 0.0, 0.0),
            NEG => (UnaryKind::Neg, 0.0, 0.0),
            SQRT => (UnaryKind::Sqrt, 0.0, 0.0),
            LOG => (UnaryKind::Log, 0.0, 0.0),
            RSQRT => (UnaryKind::Rsqrt, 0.0, 0.0),
            SQUARE => (UnaryKind::Square, 0.0, 0.0),
            SIN => (UnaryKind::Sin, 0.0, 0.0),
            COS => (UnaryKind::Cos, 0.0, 0.0),
            CEIL => (UnaryKind::Ceil, 0.0, 0.0),
            FLOOR => (UnaryKind::Floor, 0.0, 0.0),
            ROUND => (UnaryKind::Round, 0.0, 0.0),
            SIGN => (UnaryKind::Sign, 0.0, 0.0),
            GELU if self.opt(o)?.bool(0, false)? => (UnaryKind::GeluTanh, 0.0, 0.0),
            GELU => (UnaryKind::Gelu, 0.0, 0.0),
            _ => (UnaryKind::Elu, 1.0, 0.0),
        };
        self.push1(name, OpParams::Unary(UnaryParams { kind, a, b }), x, y)
    }

    /// int8 logistic, tanh, the ReLUs, leaky ReLU and hard-swish: a 256-entry table
    /// holding, for each input byte, the byte TFLite's reference kernel computes
    /// ([`crate::lut`]).
    fn lookup_table(&mut self, o: &TfOp<'a>, name: String, x: usize, y: usize) -> Result<()> {
        let (
            Quant::PerTensor {
                scale: sx,
                zero_point: zx,
            },
            Quant::PerTensor {
                scale: sy,
                zero_point: zy,
            },
        ) = (self.g.tensors[x].quant, self.g.tensors[y].quant)
        else {
            bail!("int8 {} needs per-tensor quantization", op_name(o.code));
        };
        for (what, s, z) in [("input", sx, zx), ("output", sy, zy)] {
            if !(s.is_finite() && s > 0.0 && (-128..=127).contains(&z)) {
                bail!(
                    "int8 {} '{name}': its {what} has scale {s} and zero point {z} (a positive \
                     finite scale and a zero point in -128..=127 are required)",
                    op_name(o.code)
                );
            }
        }
        let table = match o.code {
            LOGISTIC => lut_i8(sx, zx, sy, zy, logistic),
            TANH => lut_i8(sx, zx, sy, zy, f32::tanh),
            LEAKY_RELU => {
                let alpha = self.opt(o)?.f32(0, 0.0)?;
                crate::lut::leaky_relu_i8(sx, zx, sy, zy, alpha)
            }
            HARD_SWISH => crate::lut::hard_swish_i8(sx, zx, sy, zy).ok_or_else(|| {
                anyhow!("int8 HARD_SWISH '{name}': output scale below input scale / 128 (TFLite refuses it too)")
            })?,
            RELU => crate::lut::relu_i8(sx, zx, sy, zy, 0.0, f32::INFINITY),
            RELU6 => crate::lut::relu_i8(sx, zx, sy, zy, 0.0, 6.0),
            RELU_N1_TO_1 => crate::lut::relu_i8(sx, zx, sy, zy, -1.0, 1.0),
            _ => bail!("int8 {} is not supported (only float)", op_name(o.code)),
        };
        let t = self
            .g
            .add_tensor(format!("{name}.table"), DType::I8, vec![256]);
        self.g.tensors[t].data = Some(Data::I8(table));
        self.g.push(Node::new(
            name,
            OpParams::Lut(LutParams),
            vec![Some(x), Some(t)],
            vec![y],
        ));
        Ok(())
    }

    fn softmax(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let beta = self.opt(o)?.f32(0, 1.0)?;
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let axis = self
            .shape(x)
            .len()
            .checked_sub(1)
            .ok_or_else(|| anyhow!("softmax of a scalar"))?;
        let mut p = SoftmaxParams {
            beta,
            ..SoftmaxParams::new(axis, false)
        };
        if self.is_int8(o.inputs[0]) {
            let want = Quant::PerTensor {
                scale: 1.0 / 256.0,
                zero_point: -128,
            };
            if self.g.tensors[y].quant != want {
                bail!("int8 softmax output must have scale 1/256 and zero point -128");
            }
            let (input_multiplier, input_left_shift, diff_min) =
                softmax_params(beta, self.q_scale(x));
            p.quant = SoftmaxQuant {
                input_multiplier,
                input_left_shift,
                diff_min,
            };
        }
        self.push1(name, OpParams::Softmax(p), x, y)
    }

    fn reduce(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let xs = self.shape(x);
        let rank = xs.len() as i64;
        let (mut mask, mut count) = (0u32, 1i64);
        for a in self.const_ints(o.inputs[1])? {
            let a = if a < 0 { a + rank } else { a };
            if !(0..rank).contains(&a) {
                bail!("reduction axis {a} outside rank {rank}");
            }
            if mask & (1 << a) == 0 {
                count *= xs[a as usize] as i64;
            }
            mask |= 1 << a;
        }
        let reducer = match o.code {
            MEAN => Reducer::Mean,
            SUM => Reducer::Sum,
            REDUCE_MAX => Reducer::Max,
            REDUCE_MIN => Reducer::Min,
            _ => Reducer::Prod,
        };
        let mut p = ReduceParams::new(reducer, mask);
        if self.is_int8(o.inputs[0]) && reducer == Reducer::Mean {
            let (multiplier, shift) = mean_params(self.q_scale(x), self.q_scale(y), count);
            p.quant = MeanQuant { multiplier, shift };
        }
        self.push1(name, OpParams::Reduce(p), x, y)
    }

    fn quantize(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        if self.g.tensors[x].dtype != DType::F32 || self.g.tensors[y].dtype != DType::I8 {
            bail!("only float32 -> int8 QUANTIZE is supported");
        }
        self.push1(name, OpParams::Quantize(QuantizeParams), x, y)
    }

    /// An int8 activation becomes a dequantize op; constant weights stored as float16/int8
    /// feeding float ops are folded to f32 now.
    fn dequantize(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let src = o.inputs[0];
        if src >= 0 && !self.is_const(src as usize) && self.is_int8(src) {
            let x = self.input(o, 0)?;
            let y = self.out(o)?;
            self.g.push(Node::new(
                name,
                OpParams::Dequantize(DequantizeParams),
                vec![Some(x)],
                vec![y],
            ));
            return Ok(());
        }
        if src < 0 || !self.is_const(src as usize) {
            bail!("DEQUANTIZE of an activation needs a quantized model");
        }
        let v = self.const_f32(src as usize)?;
        let out = o.outputs[0] as usize;
        let shape = self.info(out).shape.clone();
        let id = self.g.add_const_f32(self.info(out).name.clone(), shape, v);
        self.map.insert(out, id);
        Ok(())
    }

    /// PReLU: `x >= 0 ? x : alpha * x` with constant slopes broadcast to `x` (Keras' PReLU layer,
    /// `[1, 1, C]` for one slope per channel). float only: kiln has no int8 PReLU kernel yet.
    fn prelu(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        if self.is_int8(o.inputs[0]) {
            bail!(
                "int8 PRELU is not supported (convert the float model and quantize it with kiln)"
            );
        }
        let x = self.input(o, 0)?;
        let alpha = self.input(o, 1)?;
        if self.g.tensors[alpha].data.is_none() {
            bail!("PRELU slopes must be constant");
        }
        let y = self.out(o)?;
        self.g.push(Node::new(
            name,
            OpParams::Prelu(PreluParams),
            vec![Some(x), Some(alpha)],
            vec![y],
        ));
        Ok(())
    }

    fn reshape(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        if self.g.tensors[x].len() != self.g.tensors[y].len() {
            bail!("reshape changes the element count");
        }
        self.push1(name, OpParams::Reshape(ReshapeParams), x, y)
    }

    fn concat(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let opt = self.opt(o)?;
        let y = self.out(o)?;
        let rank = self.shape(y).len() as i32;
        let mut axis = opt.i32(0, 0)?;
        if axis < 0 {
            axis += rank;
        }
        let axis =
            usize::try_from(axis).map_err(|_| anyhow!("concat axis {axis} outside rank {rank}"))?;
        let mut ins = Vec::new();
        for k in 0..o.inputs.len() {
            ins.push(Some(self.input(o, k)?));
        }
        let node = Node::new(name, OpParams::Concat(ConcatParams { axis }), ins, vec![y]);
        self.push_with_act(node, opt.u8(1, 0)?)
    }

    fn pad(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let pads = self.const_ints(o.inputs[1])?;
        let rank = self.shape(x).len();
        if pads.len() != 2 * rank {
            bail!("paddings must be [{rank}, 2]");
        }
        let value = if o.code == PADV2 && o.inputs.len() > 2 && o.inputs[2] >= 0 {
            let c = self.tensor(o.inputs[2] as usize)?;
            self.g
                .const_f32(c)
                .and_then(|v| v.first().copied())
                .unwrap_or(0.0)
        } else {
            0.0
        };
        if rank > MAX_RANK {
            bail!("pad of a rank-{rank} tensor (at most {MAX_RANK})");
        }
        let mut p = PadParams {
            mode: PadMode::Constant(value),
            pads: [(0, 0); MAX_RANK],
        };
        for d in 0..rank {
            let (b, a) = (pads[2 * d], pads[2 * d + 1]);
            if !(0..1 << 15).contains(&b) || !(0..1 << 15).contains(&a) {
                bail!("padding ({b}, {a}) out of range");
            }
            p.pads[d] = (b as usize, a as usize);
        }
        self.push1(name, OpParams::Pad(p), x, y)
    }

    fn transpose(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let perm = self.const_ints(o.inputs[1])?;
        let rank = self.shape(x).len();
        let mut seen = vec![false; rank];
        for &p in &perm {
            if p < 0 || p as usize >= rank || std::mem::replace(&mut seen[p as usize], true) {
                bail!("permutation {perm:?} is not a permutation of rank {rank}");
            }
        }
        if perm.len() != rank || rank > 6 {
            bail!("permutation {perm:?} does not fit an input of rank {rank} (at most 6)");
        }
        let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
        self.push1(name, OpParams::Transpose(TransposeParams::new(&perm)), x, y)
    }

    fn strided_slice(&mut self, o: &TfOp<'a>, name: String) -> Result<()> {
        let opt = self.opt(o)?;
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let xs = self.shape(x);
        let begin = self.const_ints(o.inputs[1])?;
        let end = self.const_ints(o.inputs[2])?;
        let strides = self.const_ints(o.inputs[3])?;
        let (bm, em, ellipsis, new_axis, shrink) = (
            opt.i32(0, 0)?,
            opt.i32(1, 0)?,
            opt.i32(2, 0)?,
            opt.i32(3, 0)?,
            opt.i32(4, 0)?,
        );
        if ellipsis != 0 || new_axis != 0 {
            bail!("ellipsis and new-axis masks are not supported");
        }
        if xs.len() > MAX_RANK {
            bail!("slice of a rank-{} tensor (at most {MAX_RANK})", xs.len());
        }
        let mut sp = SliceParams::default();
        let mut sliced = Vec::new();
        for d in 0..xs.len() {
            let n = xs[d] as i64;
            let s = strides.get(d).copied().unwrap_or(1);
            if s == 0 {
                bail!("stride 0 on axis {d}");
            }
            let clampb = |v: i64| if v < 0 { v + n } else { v };
            let (lo, hi) = if s > 0 { (0, n) } else { (-1, n - 1) };
            let mut b = if bm & (1 << d) != 0 {
                if s > 0 {
                    0
                } else {
                    n - 1
                }
            } else {
                clampb(begin.get(d).copied().unwrap_or(0)).clamp(lo, hi)
            };
            let mut e = if em & (1 << d) != 0 {
                if s > 0 {
                    n
                } else {
                    -1
                }
            } else {
                clampb(end.get(d).copied().unwrap_or(n)).clamp(lo, hi)
            };
            if shrink & (1 << d) != 0 {
                b = clampb(begin.get(d).copied().unwrap_or(0));
                e = b + 1;
            }
            let count = if s > 0 {
                (e - b + s - 1).div_euclid(s)
            } else {
                (b - e + (-s) - 1).div_euclid(-s)
            };
            if count <= 0 {
                bail!("slice is empty on axis {d}");
            }
            sp.begin[d] = i32::try_from(b)?;
            sp.step[d] = if shrink & (1 << d) != 0 {
                1
            } else {
                i32::try_from(s)?
            };
            sliced.push(count as usize);
        }
        let mut node = Node::new(name.clone(), OpParams::Slice(sp), vec![Some(x)], vec![]);
        if sliced == self.shape(y) {
            node.outputs.push(y);
            self.g.push(node);
        } else {
            let t = self
                .g
                .add_tensor(format!("{name}.sliced"), DType::F32, sliced);
            node.outputs.push(t);
            self.g.push(node);
            self.g.push(Node::new(
                format!("{name}.shrink"),
                OpParams::Reshape(ReshapeParams),
                vec![Some(t)],
                vec![y],
            ));
        }
        Ok(())
    }
}
