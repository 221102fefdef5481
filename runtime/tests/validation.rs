//! The dataflow rules `Model::from_bytes` enforces, checked by property over generated graphs:
//! every model that validates invokes without error, and validation accepts a graph exactly
//! when a brute-force check finds every read preceded by its write, every graph output written
//! and no two live tensors sharing arena bytes. Plus the linear-time guard: long chains load
//! fast (the old validator was cubic in the op count).

use kiln_runtime::format::MAX_LIVE;
use kiln_runtime::ops::{BinaryKind, BinaryParams, OpDef, UnaryKind, UnaryParams};
use kiln_runtime::writer::{write, AlignedBuf, ModelSpec, OpSpec, TensorData, TensorSpec};
use kiln_runtime::{DType, Model, OpKind, Quant, Session};
use proptest::prelude::*;

const N: usize = 8; // elements per tensor: 32 bytes, two 16-byte arena units

fn t(name: String, offset: usize) -> TensorSpec {
    TensorSpec {
        name,
        dtype: DType::F32,
        shape: vec![1, N],
        data: TensorData::Arena { offset },
        quant: Quant::None,
    }
}

fn unary(kind: UnaryKind, x: u32, y: u32) -> OpSpec {
    let params = UnaryParams::new(kind).encode();
    OpSpec {
        kind: OpKind::Unary,
        name: format!("u{y}"),
        inputs: vec![Some(x)],
        outputs: vec![y],
        params,
    }
}

/// `y = a + b` in f32, no fused activation.
fn add(a: u32, b: u32, y: u32) -> OpSpec {
    let params = BinaryParams::new(BinaryKind::Add).encode();
    OpSpec {
        kind: OpKind::Binary,
        name: format!("add{y}"),
        inputs: vec![Some(a), Some(b)],
        outputs: vec![y],
        params,
    }
}

/// A chain of `n` Sigmoid/Tanh ops ping-ponging between two arena slots.
fn chain(n: usize) -> Vec<u8> {
    let tensors = (0..=n).map(|i| t(format!("t{i}"), 32 * (i % 2))).collect();
    let ops = (0..n)
        .map(|i| {
            unary(
                [UnaryKind::Sigmoid, UnaryKind::Tanh][i % 2],
                i as u32,
                i as u32 + 1,
            )
        })
        .collect();
    write(&ModelSpec {
        tensors,
        ops,
        inputs: vec![0],
        outputs: vec![n as u32],
    })
    .unwrap()
}

#[test]
fn long_chains_load_in_linear_time() {
    for n in [800, 20_000] {
        let b = chain(n);
        let buf = AlignedBuf::new(&b);
        let t0 = std::time::Instant::now();
        let m = Model::from_bytes(buf.as_slice()).unwrap();
        let took = t0.elapsed();
        eprintln!("{n}-op chain validated in {took:?}");
        assert_eq!(m.num_ops(), n);
        // A generous bound (the old validator took 2 s for 800 ops and minutes for 20,000): it
        // guards against super-linear regressions, not a benchmark.
        assert!(
            took.as_secs_f64() < 1.0,
            "{n} ops took {took:?} to validate"
        );
        let mut arena = AlignedBuf::zeroed(m.arena_size());
        let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
        s.set_input_f32(0, &[0.5; N]).unwrap();
        s.invoke().unwrap();
        assert!(s.output_f32(0).unwrap().iter().all(|v| v.is_finite()));
        if let Some(dir) = std::env::var_os("KILN_WRITE_SEEDS") {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("chain{n}.kiln")),
                &b,
            )
            .unwrap();
        }
    }
}

/// A generated graph: op `i` reads one or two earlier tensors (graph inputs or op outputs) and
/// writes tensor `inputs + i` at a chosen 32-byte slot.
#[derive(Clone, Debug)]
struct Graph {
    inputs: usize,
    slots: Vec<usize>, // slot of every tensor (inputs first)
    reads: Vec<(usize, Option<usize>)>,
    outputs: Vec<usize>,
}

fn graphs() -> impl Strategy<Value = Graph> {
    (1usize..4, 1usize..10).prop_flat_map(|(inputs, ops)| {
        let n = inputs + ops;
        (
            proptest::collection::vec(0usize..6, n),
            proptest::collection::vec((0usize..1000, proptest::option::of(0usize..1000)), ops),
            proptest::collection::vec(0usize..1000, 1..3),
        )
            .prop_map(move |(slots, raw, outs)| Graph {
                inputs,
                slots,
                reads: raw
                    .iter()
                    .enumerate()
                    .map(|(i, &(a, b))| (a % (inputs + i), b.map(|b| b % (inputs + i))))
                    .collect(),
                outputs: outs.iter().map(|&o| inputs + o % ops).collect(),
            })
    })
}

impl Graph {
    fn spec(&self) -> ModelSpec {
        let tensors = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, &s)| t(format!("t{i}"), 32 * s))
            .collect();
        let ops = self
            .reads
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let y = (self.inputs + i) as u32;
                match b {
                    None => unary(UnaryKind::Relu, a as u32, y),
                    Some(b) => add(a as u32, b as u32, y),
                }
            })
            .collect();
        ModelSpec {
            tensors,
            ops,
            inputs: (0..self.inputs as u32).collect(),
            outputs: self.outputs.iter().map(|&o| o as u32).collect(),
        }
    }

    /// Brute force, on a time axis where 0 is "before op 0" and op `j` runs at time `j + 1`:
    /// graph inputs are born at 0, op outputs when their op runs; a tensor lives until its last
    /// read (graph outputs to the end; a graph input nothing reads dies at 0). No two tensors
    /// live at the same time may share a slot.
    fn plan_is_sound(&self) -> bool {
        let n = self.slots.len();
        let end = self.reads.len() + 1;
        let born = |k: usize| {
            if k < self.inputs {
                0
            } else {
                k - self.inputs + 1
            }
        };
        let last = |k: usize| {
            if self.outputs.contains(&k) {
                return end;
            }
            let mut l = born(k);
            for (j, &(a, b)) in self.reads.iter().enumerate() {
                if a == k || b == Some(k) {
                    l = l.max(j + 1);
                }
            }
            l
        };
        for p in 0..n {
            for q in p + 1..n {
                if self.slots[p] == self.slots[q] && born(p) <= last(q) && born(q) <= last(p) {
                    return false;
                }
            }
        }
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn validation_accepts_exactly_the_sound_plans_and_they_all_invoke(g in graphs()) {
        let b = write(&g.spec()).unwrap();
        let buf = AlignedBuf::new(&b);
        let loaded = Model::from_bytes(buf.as_slice());
        prop_assert_eq!(loaded.is_ok(), g.plan_is_sound(), "{:?}: {:?}", g, loaded.err());
        if let Ok(m) = loaded {
            let mut arena = AlignedBuf::zeroed(m.arena_size());
            let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
            for k in 0..m.num_inputs() {
                s.set_input_f32(k, &[0.25; N]).unwrap();
            }
            prop_assert!(s.invoke().is_ok());
            // Every output was written by the ops: a chain of relu and add of 0.25 is >= 0.25.
            for k in 0..m.num_outputs() {
                prop_assert!(s.output_f32(k).unwrap().iter().all(|&v| v >= 0.25));
            }
        }
    }
}

#[test]
fn more_live_tensors_than_the_validator_holds_are_refused_clearly() {
    // MAX_LIVE + 1 graph inputs in distinct slots, all live until one op adds the first two.
    let n = MAX_LIVE + 1;
    let mut tensors: Vec<TensorSpec> = (0..n).map(|i| t(format!("x{i}"), 32 * i)).collect();
    tensors.push(t("y".into(), 32 * n));
    let spec = ModelSpec {
        tensors,
        ops: vec![add(0, 1, n as u32)],
        inputs: (0..n as u32).collect(),
        outputs: vec![n as u32],
    };
    let b = write(&spec).unwrap();
    let err = Model::from_bytes(AlignedBuf::new(&b).as_slice()).unwrap_err();
    assert!(err.to_string().contains("more than 64"), "{err}");
}
