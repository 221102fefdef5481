//! On-device fine-tuning on a Cortex-M4F with kiln: the int8 digits CNN in flash, its f32 head
//! (128 -> 10) adapted to digits turned 90 degrees one sample at a time with plain SGD, the
//! samples and a held-out set compiled in beside the model. No heap: the model's arena and the
//! trainer's memory are statics sized before boot.
//!
//! The tuned head is saved through the `embedded-storage` `NorFlash` trait (kiln's two-slot,
//! CRC-checked `HeadStore`) into a RAM-backed flash that survives a reset (QEMU keeps RAM
//! across a system reset; a real part would hand its flash driver to the same store). The
//! firmware then resets itself; on the second boot it finds the record, reloads the head and
//! checks that it classifies the held-out set exactly as before the reset.
//!
//! Under QEMU (`mps2-an386`) the console is semihosting; `scripts/firmware.sh` compares the
//! transcript with the host's run of the same `adapt.rs` line for line.
#![no_std]
#![no_main]

mod adapt;
#[path = "../../common/firmware.rs"]
mod firmware;
#[path = "../generated/model.rs"]
#[allow(dead_code)]
mod model;
include!(concat!(env!("OUT_DIR"), "/board_map.rs"));

use adapt::{FEATURES, RECORD};
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use kiln_runtime::train::store::{HeadStore, RamNorFlash};
use kiln_runtime::train::{
    train_arena_size, Activation, Head, Layer, ModelHead, Optimizer, TrainError, Trainer,
};
use kiln_runtime::{AlignedBytes, Model, Session};
use panic_semihosting as _;

const TRAIN: &[u8] = include_bytes!("../generated/train.bin");
const TEST: &[u8] = include_bytes!("../generated/test.bin");
const N_TRAIN: usize = TRAIN.len() / RECORD;
const N_TEST: usize = TEST.len() / RECORD;
/// The trainer's memory: `train_arena_size` of a 128 -> 10 head with SGD, batch 1 (checked).
const TRAIN_MEM: usize = 5400;
/// The RAM-backed flash: two slots of 6 KiB (16 B header + 5,160 B of parameters, rounded up
/// to 1 KiB sectors).
const NOR_LEN: usize = 12 * 1024;
const BOOT_MAGIC: u32 = 0x4b49_4c4e;

static mut ARENA: AlignedBytes<{ model::ARENA_SIZE }> = AlignedBytes::zeroed();
static mut MEM: AlignedBytes<TRAIN_MEM> = AlignedBytes::zeroed();
static mut TRAIN_FEATS: [f32; N_TRAIN * FEATURES] = [0.0; N_TRAIN * FEATURES];
static mut TEST_FEATS: [f32; N_TEST * FEATURES] = [0.0; N_TEST * FEATURES];
static mut TEST_LABELS: [u8; N_TEST] = [0; N_TEST];
/// Survives a reset: cortex-m-rt neither zeroes nor loads `.uninit`.
#[link_section = ".uninit.KILN_NOR"]
static mut NOR: MaybeUninit<[u8; NOR_LEN]> = MaybeUninit::uninit();
/// Boot state across the reset: magic, boot number, held-out right, head CRC.
#[link_section = ".uninit.KILN_BOOT"]
static mut BOOT: MaybeUninit<[u32; 4]> = MaybeUninit::uninit();

fn say(l: &adapt::Line) {
    let s = core::str::from_utf8(l).unwrap_or("?");
    hprintln!("{}", s.trim_end());
}

fn run(sp: usize) -> Result<bool, TrainError> {
    // SAFETY: the only references to these statics, taken once, before anything else runs.
    let (arena, mem, train_feats, test_feats, test_labels, nor, boot) = unsafe {
        (
            (*addr_of_mut!(ARENA)).as_mut_slice(),
            (*addr_of_mut!(MEM)).as_mut_slice(),
            &mut *addr_of_mut!(TRAIN_FEATS),
            &mut *addr_of_mut!(TEST_FEATS),
            &mut *addr_of_mut!(TEST_LABELS),
            // RAM holds some bytes at every boot; they are read as flash contents.
            &mut *addr_of_mut!(NOR).cast::<[u8; NOR_LEN]>(),
            &mut *addr_of_mut!(BOOT).cast::<[u32; 4]>(),
        )
    };
    let mut data = adapt::Samples {
        train: TRAIN,
        test: TEST,
        train_feats,
        test_feats,
        test_labels,
    };
    let m = Model::from_bytes(model::MODEL.as_slice())?;
    let mh = ModelHead::find(&m, 1)?;
    let mut s = Session::new(&m, arena)?;
    let opt = adapt::optimizer();
    let need = train_arena_size(&mh.head, &opt, 1);
    let mut t = Trainer::new(mh.head, opt, adapt::LOSS, 1, mem)?;
    let mut flash = RamNorFlash::new(nor);
    let store = match HeadStore::new(&flash, 0, NOR_LEN as u32, mh.head.num_params()) {
        Ok(s) => s,
        Err(e) => {
            hprintln!("flash store: {}", e);
            return Ok(false);
        }
    };
    if boot[0] == BOOT_MAGIC && boot[1] == 1 {
        boot[0] = 0;
        let seq = match store.load(&mut flash, t.params_mut()) {
            Ok(Some(seq)) => seq,
            other => {
                hprintln!("after reset: no head in flash ({:?})", other);
                return Ok(false);
            }
        };
        adapt::held_out(&mh, &mut s, &mut data)?;
        let right = adapt::correct(&mut t, data.test_feats, data.test_labels)?;
        let crc = adapt::params_crc(t.params());
        let same = right as u32 == boot[2] && crc == boot[3];
        hprintln!(
            "after reset: head record #{} reloaded from flash: held-out accuracy {}/{}, head crc {:08x} ({})",
            seq,
            right,
            N_TEST,
            crc,
            if same { "as before the reset" } else { "DIFFERENT from before the reset" }
        );
        return Ok(same);
    }
    hprintln!(
        "fine-tuning the digits head ({} -> {}, {} parameters) on {} turned digits, {} held out; \
         SGD batch 1 in {} B of training memory (static {} B), model arena {} B",
        mh.head.inputs(),
        mh.head.outputs(),
        mh.head.num_params(),
        N_TRAIN,
        N_TEST,
        need,
        TRAIN_MEM,
        model::ARENA_SIZE
    );
    // A keyword-spotting head (64 -> 12, as the MLPerf Tiny DS-CNN's) sized the same way.
    let kws = Head::new(&[Layer {
        inputs: 64,
        outputs: 12,
        act: Activation::Identity,
    }])?;
    let size = |o: Optimizer| train_arena_size(&kws, &o, 1);
    hprintln!(
        "a 64 -> 12 head ({} B of parameters) trains in {} B with SGD, {} B with momentum, \
         {} B with RMSprop, {} B with Adam (batch 1)",
        kws.num_params() * 4,
        size(Optimizer::sgd(0.01)),
        size(Optimizer::momentum(0.01, 0.9)),
        size(Optimizer::rmsprop(0.01)),
        size(Optimizer::adam(0.01))
    );
    mh.load_params(&m, t.params_mut())?;
    let right = adapt::adapt(&mh, &mut s, &mut t, &mut data, &mut say)?;
    let crc = adapt::params_crc(t.params());
    match store.save(&mut flash, t.params()) {
        Ok(seq) => hprintln!(
            "saved the head as flash record #{} (two slots, CRC-32)",
            seq
        ),
        Err(e) => {
            hprintln!("saving the head: {}", e);
            return Ok(false);
        }
    }
    hprintln!(
        "stack high-water {} B; resetting",
        firmware::stack_used(sp, RAM_START)
    );
    *boot = [BOOT_MAGIC, 1, right as u32, crc];
    cortex_m::peripheral::SCB::sys_reset();
}

#[entry]
fn main() -> ! {
    let sp = firmware::paint_stack(RAM_START);
    let ok = match run(sp) {
        Ok(ok) => ok,
        Err(e) => {
            hprintln!("error: {}", e);
            false
        }
    };
    firmware::exit(ok)
}
