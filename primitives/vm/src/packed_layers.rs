//! Fully-connected weights packed for the backend's repeated-layer path, and convolution
//! weights laid out once for the executions that share a [`PackedLayers`].
//!
//! An LSTM multiplies the same two matrices at each of its steps; a backend that computes
//! faster from a rearranged copy of the weights ([`Kernels::pack_fully_connected`]) gets one
//! when a layer runs for the second time, and keeps it for the rest of the execution, or for
//! later executions too where the caller keeps the [`PackedLayers`]
//! ([`crate::execute_slice_packed`]). Nothing
//! here changes what a program computes or pays: the kernels' outputs are bit-identical and
//! each weight read is charged as before. The copies live on the backend's side (natively, in
//! the node's memory); inside the wasm runtime the backend packs nothing and this holds nothing.

use alloc::rc::Rc;
use alloc::vec::Vec;

use smartvm_kernels::{ChannelQuant, ConvParams, Kernels, PackedFc, PreparedConv};

/// A layer's identity: its first weight block, inputs and outputs. The weight source does not
/// change during an execution (nor, by [`crate::execute_slice_packed`]'s contract, between the
/// executions that share a [`PackedLayers`]), so equal keys mean equal weights.
pub(crate) type LayerKey = (u32, u64, u64);

/// Most weight bytes of one layer worth packing: the LSTM's gates are 43 KB and run once a
/// step; AlexNet's fc6 (38 MB) runs once an execution, but the executions that share a
/// [`PackedLayers`] (the CLI's repeats) read it as one stream (AVX2's runs) where eight rows'
/// streams were slower. VGG-16's fc6 (103 MB) is past it.
const MAX_LAYER_BYTES: usize = 64 << 20;

/// Most bytes all packed layers of one [`PackedLayers`] hold (AlexNet's three: 59 MB).
const MAX_TOTAL_BYTES: usize = 128 << 20;

/// Layers seen once that are remembered, waiting for a second run.
const MAX_SEEN: usize = 64;

/// Most heap bytes one convolution's prepared layout may hold (ResNet-18's largest, split into
/// int16 pairs for AVX2, is 4.7 MB).
const MAX_CONV_BYTES: usize = 8 << 20;

/// Most bytes all prepared convolutions of one [`PackedLayers`] hold: ResNet-18's, split, are
/// 22 MB.
const MAX_CONV_TOTAL_BYTES: usize = 32 << 20;

/// Most convolutions a [`PackedLayers`] remembers, prepared or declined.
const MAX_CONVS: usize = 256;

/// Fully-connected layers seen once, and those packed, of one program on one weight source;
/// and the storage of the feature maps the last execution dropped, for the next one's.
#[derive(Default)]
pub struct PackedLayers {
    seen: Vec<LayerKey>,
    packed: Vec<(LayerKey, Rc<PackedFc>)>,
    bytes: usize,
    frames: Vec<Vec<i8>>,
    /// Convolutions prepared (`Some`) or that the backend declined or the bounds refused
    /// (`None`, not asked again).
    convs: Vec<(LayerKey, Option<Rc<PreparedConv>>)>,
    /// Convolutions run once, waiting for a second run to be prepared.
    convs_seen: Vec<LayerKey>,
    conv_bytes: usize,
}

impl PackedLayers {
    /// The frame storage the last execution left (see [`crate::Buffer`]'s kept frames): a run
    /// that starts with it writes its layers' outputs into memory already in use, where a
    /// fresh Buffer zeroed about half of MobileNetV2's outputs' bytes on one thread.
    pub(crate) fn take_frames(&mut self) -> Vec<Vec<i8>> {
        core::mem::take(&mut self.frames)
    }

    /// Keeps an execution's frame storage for the next one.
    pub(crate) fn keep_frames(&mut self, frames: Vec<Vec<i8>>) {
        self.frames = frames;
    }

    /// The prepared layout of convolution `key` (its first weight block, weights and outputs),
    /// made at its second run: the backend's per-run layout work, done once for the runs that
    /// follow (and no more than that work for the second, which uses it even where the bounds
    /// keep it no longer). `None` at a first run: an execution that runs each layer once, on a
    /// fresh [`PackedLayers`], lays the weights out per task as before, in parallel and in
    /// reused storage, rather than preparing whole layers it will not see again. `None` also
    /// where the backend makes no layout for it, or the bounds were reached before it was made.
    pub(crate) fn conv<K: Kernels>(
        &mut self,
        key: LayerKey,
        kernels: &K,
        (p, weights, q): (&ConvParams, &[i8], &ChannelQuant),
    ) -> Option<Rc<PreparedConv>> {
        if let Some((_, prepared)) = self.convs.iter().find(|(k, _)| *k == key) {
            return prepared.clone();
        }
        if self.convs.len() >= MAX_CONVS || self.conv_bytes >= MAX_CONV_TOTAL_BYTES {
            return None;
        }
        let Some(at) = self.convs_seen.iter().position(|k| *k == key) else {
            if self.convs_seen.len() < MAX_CONVS {
                self.convs_seen.push(key);
            }
            return None;
        };
        self.convs_seen.swap_remove(at);
        let prepared = kernels.prepare_conv(p, weights, q).map(Rc::new);
        let kept = prepared.clone().filter(|c| {
            let bytes = c.heap_bytes();
            bytes <= MAX_CONV_BYTES && self.conv_bytes + bytes <= MAX_CONV_TOTAL_BYTES
        });
        self.conv_bytes += kept.as_ref().map_or(0, |c| c.heap_bytes());
        self.convs.push((key, kept));
        prepared
    }

    /// The packed form of the layer `key` if it ran before in this execution and the backend
    /// packs it (packing it now at its second run); `None` for a first run, a layer too large,
    /// or once the bounds are reached.
    pub(crate) fn get<K: Kernels>(
        &mut self,
        key: LayerKey,
        kernels: &K,
        weights: &[i8],
    ) -> Option<Rc<PackedFc>> {
        if let Some((_, packed)) = self.packed.iter().find(|(k, _)| *k == key) {
            return Some(packed.clone());
        }
        if weights.len() > MAX_LAYER_BYTES || self.bytes >= MAX_TOTAL_BYTES {
            return None;
        }
        let Some(at) = self.seen.iter().position(|k| *k == key) else {
            if self.seen.len() < MAX_SEEN {
                self.seen.push(key);
            }
            return None;
        };
        self.seen.swap_remove(at);
        let packed = Rc::new(kernels.pack_fully_connected(weights, key.1 as usize)?);
        self.bytes += packed.heap_bytes();
        self.packed.push((key, packed.clone()));
        Some(packed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartvm_kernels::{KernelError, PairQuant, PoolParams};

    /// A backend that packs every layer (the reference backend packs none).
    struct Packing;

    std::thread_local! {
        /// Convolutions [`Packing`] prepared on this thread.
        static PREPARED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    fn prepared() -> usize {
        PREPARED.with(|n| n.get())
    }

    impl Kernels for Packing {
        fn conv(
            &self,
            _: &ConvParams,
            _: &[i8],
            _: &[i8],
            _: &ChannelQuant,
            _: &mut [i8],
        ) -> Result<(), KernelError> {
            unreachable!()
        }
        fn conv_transpose(
            &self,
            _: &smartvm_kernels::ConvTransposeParams,
            _: &[i8],
            _: &[i8],
            _: &ChannelQuant,
            _: &mut [i8],
        ) -> Result<(), KernelError> {
            unreachable!()
        }
        fn pool(&self, _: &PoolParams, _: &[i8], _: &mut [i8]) -> Result<(), KernelError> {
            unreachable!()
        }
        fn fully_connected(
            &self,
            _: &[i8],
            _: &[i8],
            _: &ChannelQuant,
            _: &mut [i8],
        ) -> Result<(), KernelError> {
            unreachable!()
        }
        fn matmul(
            &self,
            _: [u32; 3],
            _: &[i8],
            _: &[i8],
            _: &PairQuant,
            _: &mut [i8],
        ) -> Result<(), KernelError> {
            unreachable!()
        }
        fn pack_fully_connected(&self, weights: &[i8], inputs: usize) -> Option<PackedFc> {
            PackedFc::new(weights, inputs)
        }

        fn prepare_conv(
            &self,
            _: &ConvParams,
            weights: &[i8],
            _: &ChannelQuant,
        ) -> Option<PreparedConv> {
            PREPARED.with(|n| n.set(n.get() + 1));
            // A layout as large as the weights, as the byte pairs are.
            Some(PreparedConv::new(weights.to_vec(), weights.len()))
        }
    }

    fn conv_layer() -> (ConvParams, ChannelQuant) {
        let input = smartvm_kernels::Shape::new(2, 1, 4, 4);
        let p = ConvParams::conv2d(input, 3, 3, 1, 1, 1, 1).unwrap();
        let q = ChannelQuant {
            input_zero: 0,
            output: smartvm_kernels::OutputRange {
                zero: 0,
                lo: -128,
                hi: 127,
            },
            bias: alloc::vec![0; 3],
            mult: alloc::vec![1 << 30; 3],
            shift: alloc::vec![0; 3],
        };
        (p, q)
    }

    #[test]
    fn a_convolution_is_prepared_at_its_second_run_and_kept() {
        let mut layers = PackedLayers::default();
        let (p, q) = conv_layer();
        let weights = alloc::vec![1i8; p.weight_len() as usize];
        let key = (3, p.weight_len(), 48);
        let asked = prepared();
        assert!(layers.conv(key, &Packing, (&p, &weights, &q)).is_none());
        assert_eq!(prepared(), asked, "a first run prepares nothing");
        let second = layers
            .conv(key, &Packing, (&p, &weights, &q))
            .expect("prepared at the second run");
        let third = layers
            .conv(key, &Packing, (&p, &weights, &q))
            .expect("kept");
        assert!(Rc::ptr_eq(&second, &third));
        assert_eq!(prepared(), asked + 1, "prepared once");
        assert_eq!(layers.conv_bytes, weights.len());
        // Another layer (other first block) starts over and gets its own.
        let other = (4, p.weight_len(), 48);
        assert!(layers.conv(other, &Packing, (&p, &weights, &q)).is_none());
        let other = layers.conv(other, &Packing, (&p, &weights, &q));
        assert!(!Rc::ptr_eq(&second, &other.expect("prepared")));
    }

    #[test]
    fn convolutions_past_the_bounds_or_declined_are_not_kept_nor_asked_again() {
        let (p, q) = conv_layer();
        let big = alloc::vec![0i8; MAX_CONV_BYTES + 1];
        let mut layers = PackedLayers::default();
        let asked = prepared();
        // Too large to keep: the run that made it uses it, the next ones get none.
        assert!(layers.conv((0, 1, 1), &Packing, (&p, &big, &q)).is_none());
        assert!(layers.conv((0, 1, 1), &Packing, (&p, &big, &q)).is_some());
        assert!(layers.conv((0, 1, 1), &Packing, (&p, &big, &q)).is_none());
        assert_eq!((layers.conv_bytes, prepared()), (0, asked + 1));
        let small = alloc::vec![1i8; 18];
        layers.conv_bytes = MAX_CONV_TOTAL_BYTES - 10;
        let mut runs = (0..3).map(|_| layers.conv((1, 18, 48), &Packing, (&p, &small, &q)));
        assert!(runs.next().unwrap().is_none());
        assert!(runs.next().unwrap().is_some());
        assert!(runs.next().unwrap().is_none());
        assert_eq!(
            (layers.conv_bytes, prepared()),
            (MAX_CONV_TOTAL_BYTES - 10, asked + 2)
        );
        // A full cache does not ask the backend at all.
        layers.conv_bytes = MAX_CONV_TOTAL_BYTES;
        for _ in 0..2 {
            assert!(layers
                .conv((9, 18, 48), &Packing, (&p, &small, &q))
                .is_none());
        }
        assert_eq!(prepared(), asked + 2);
        layers.conv_bytes = 0;
        let reference = smartvm_kernels::Reference;
        for _ in 0..3 {
            assert!(layers
                .conv((2, 18, 48), &reference, (&p, &small, &q))
                .is_none());
        }
        // Each declined layer is remembered once, so the backend is not asked again.
        assert_eq!(layers.convs.len(), 3);
        for n in 3..MAX_CONVS as u32 + 10 {
            for _ in 0..2 {
                layers.conv((n, 18, 48), &reference, (&p, &small, &q));
            }
        }
        assert_eq!(layers.convs.len(), MAX_CONVS);
        assert!(layers.convs_seen.len() <= MAX_CONVS);
    }

    #[test]
    fn a_layer_is_packed_at_its_second_run_and_kept() {
        let mut layers = PackedLayers::default();
        let weights = [1i8; 12];
        let key = (3, 4, 3);
        assert!(layers.get(key, &Packing, &weights).is_none());
        let second = layers
            .get(key, &Packing, &weights)
            .expect("packed at the second run");
        let third = layers.get(key, &Packing, &weights).expect("kept");
        assert!(Rc::ptr_eq(&second, &third));
        // Another layer (other first block) starts over.
        assert!(layers.get((4, 4, 3), &Packing, &weights).is_none());
    }

    #[test]
    fn large_layers_and_a_full_cache_pack_nothing() {
        let mut layers = PackedLayers::default();
        let big = alloc::vec![0i8; MAX_LAYER_BYTES + 1];
        let key = (0, 1, big.len() as u64);
        assert!(layers.get(key, &Packing, &big).is_none());
        assert!(layers.get(key, &Packing, &big).is_none());
        layers.bytes = MAX_TOTAL_BYTES;
        let small = [1i8; 4];
        assert!(layers.get((1, 2, 2), &Packing, &small).is_none());
        assert!(layers.get((1, 2, 2), &Packing, &small).is_none());
    }

    #[test]
    fn a_backend_that_packs_nothing_holds_nothing() {
        let mut layers = PackedLayers::default();
        let weights = [1i8; 12];
        for _ in 0..3 {
            assert!(layers
                .get((0, 4, 3), &smartvm_kernels::Reference, &weights)
                .is_none());
        }
        assert_eq!(layers.bytes, 0);
    }
}
