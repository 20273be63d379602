//! Memory for weights the native kernels stream: asked to be backed by huge pages.

use smartvm_vm::WeightPack;

/// The blocks laid end to end in memory advised for huge pages
/// ([`smartvm_kernels::memory`]): the CLI's weight source for every run and measurement of the
/// native path. AlexNet's fully connected layers read 58 MB of it an inference, past any cache.
pub fn weight_pack(blocks: &[Vec<u8>]) -> WeightPack {
    let len = blocks.iter().map(Vec::len).sum();
    WeightPack::new_in(blocks, smartvm_kernels::memory::huge_page_vec(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartvm_vm::WeightSource;

    /// A pack laid out in huge-page storage reads the same blocks as one laid out in an
    /// ordinary vector.
    #[test]
    fn huge_page_storage_holds_the_same_pack() {
        let blocks: Vec<Vec<u8>> = (0..5u8).map(|b| vec![b; 3 << 20]).collect();
        let (pack, plain) = (weight_pack(&blocks), WeightPack::new(&blocks));
        for b in 0..6u32 {
            assert_eq!(pack.block(b), plain.block(b));
        }
        assert_eq!(pack.span(1, 9 << 20), plain.span(1, 9 << 20));
    }
}
