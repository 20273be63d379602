//! Paper Table 2: weight fetching and computing, one after the other and pipelined. The weights
//! come from [`DiskBlocks`] (direct reads); the pipeline is the VM's read-ahead thread.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use smartvm_vm::{with_read_ahead, Executable, WeightSource};

use super::disk::DiskBlocks;
use crate::fidelity::median;
use crate::run::execute_with;
use crate::Backend;

/// Median latencies of one model, ms.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Pipeline {
    /// Reading every block from disk into memory, nothing else.
    pub fetch_ms: f64,
    /// Running with every block already in memory.
    pub compute_ms: f64,
    /// Running with each block read from disk when the program asks for it.
    pub serial_ms: f64,
    /// Running while the read-ahead thread reads the blocks from disk in order.
    pub pipelined_ms: f64,
    /// `1 - pipelined / serial` of each run (paired: the two ran back to back): median, least,
    /// most. The spread shows how much the disk moved during the measurement.
    pub saving: (f64, f64, f64),
}

/// Measures the four ways `runs` times each, checking that they compute the same output.
pub fn measure(
    exe: &Executable,
    input: &[i8],
    blocks: &[Vec<u8>],
    scratch: &Path,
    runs: usize,
) -> Result<Pipeline> {
    let disk = DiskBlocks::create(&scratch.join("smartvm-pipeline.blocks"), blocks)?;
    let pack = crate::memory::weight_pack(blocks);
    let expected = execute_with(Backend::Native, exe, input, &pack, u64::MAX)?.output;
    let mut samples = [(); 4].map(|_| Vec::with_capacity(runs));
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    for _ in 0..runs {
        let t = Instant::now();
        let fetched: Option<Vec<_>> = (0..disk.len()).map(|i| disk.block(i)).collect();
        samples[0].push(ms(t));
        if fetched.is_none() {
            bail!("a block could not be read back");
        }
        drop(fetched);
        let t = Instant::now();
        execute_with(Backend::Native, exe, input, &pack, u64::MAX)?;
        samples[1].push(ms(t));
        let t = Instant::now();
        let serial = execute_with(Backend::Native, exe, input, &disk, u64::MAX)?;
        samples[2].push(ms(t));
        let t = Instant::now();
        let pipelined = with_read_ahead(&disk, disk.len(), |source| {
            execute_with(Backend::Native, exe, input, source, u64::MAX)
        })?;
        samples[3].push(ms(t));
        if serial.output != expected || pipelined.output != expected {
            bail!("reading the weights from disk changed the output");
        }
    }
    let savings: Vec<f64> = samples[2]
        .iter()
        .zip(&samples[3])
        .map(|(serial, pipelined)| 1.0 - pipelined / serial)
        .collect();
    let least = savings.iter().copied().fold(f64::INFINITY, f64::min);
    let most = savings.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let saving = (median(savings), least, most);
    let [fetch, compute, serial, pipelined] = samples.map(median);
    Ok(Pipeline {
        fetch_ms: fetch,
        compute_ms: compute,
        serial_ms: serial,
        pipelined_ms: pipelined,
        saving,
    })
}
