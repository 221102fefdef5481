//! Classifies image files on a Raspberry Pi (aarch64 Linux) with kiln-runtime: the quickstart's
//! digits CNN (float or int8), images through the `image` crate, one arena allocated once.
//!
//!     raspberry-pi-digits MODEL.kiln IMAGE...
//!
//! Prints, per image, the predicted digit and the raw output values (int8 models print the
//! quantized bytes), so a run on the Pi can be compared bit for bit with a run on the host.
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{DType, Model, Quant, Session};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, images) = args
        .split_first()
        .ok_or("usage: raspberry-pi-digits MODEL.kiln IMAGE...")?;
    let bytes = std::fs::read(model_path).map_err(|e| format!("{model_path}: {e}"))?;
    let buf = AlignedBuf::new(&bytes);
    let model = Model::from_bytes(buf.as_slice()).map_err(|e| format!("{model_path}: {e}"))?;
    let input = model.tensor(model.input_tensor(0).map_err(|e| e.to_string())?);
    let (h, w) = match input.shape() {
        [1, 1, h, w] | [1, h, w, 1] => (*h, *w),
        s => {
            return Err(format!(
                "expected a one-channel image input, model has {s:?}"
            ))
        }
    };
    let mut arena = AlignedBuf::zeroed(model.arena_size());
    let mut session = Session::new(&model, arena.as_mut_slice()).map_err(|e| e.to_string())?;
    // On a Pi (aarch64) the microkernels run on NEON.
    eprintln!("kiln: kernels use {}", session.isa().name());
    for path in images {
        let img = image::open(path).map_err(|e| format!("{path}: {e}"))?;
        let gray = img
            .resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
            .to_luma8();
        let x: Vec<f32> = gray.pixels().map(|p| p.0[0] as f32 / 255.0).collect();
        match (input.dtype, input.quant) {
            (DType::I8, Quant::PerTensor { scale, zero_point }) => {
                let dst = session.input_bytes_mut(0).map_err(|e| e.to_string())?;
                for (d, v) in dst.iter_mut().zip(&x) {
                    *d = ((v / scale).round() as i32 + zero_point).clamp(-128, 127) as i8 as u8;
                }
            }
            _ => session
                .set_input_f32(0, &x)
                .map_err(|e| format!("{path}: {e}"))?,
        }
        session.invoke().map_err(|e| e.to_string())?;
        let out = session.output_bytes(0).map_err(|e| e.to_string())?;
        let output = model.tensor(model.output_tensor(0).map_err(|e| e.to_string())?);
        let values: Vec<String> = match output.dtype {
            DType::I8 => out.iter().map(|&b| (b as i8).to_string()).collect(),
            _ => out
                .chunks_exact(4)
                .map(|c| format!("{:08x}", u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        };
        let scores: Vec<f32> = match output.dtype {
            DType::I8 => out.iter().map(|&b| b as i8 as f32).collect(),
            _ => out
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        let best = scores
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > scores[b] { i } else { b });
        println!("{path}: digit {best} [{}]", values.join(" "));
    }
    Ok(())
}
