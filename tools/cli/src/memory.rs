//! Memory for weights the native kernels stream: asked to be backed by huge pages.

use smartvm_vm::WeightPack;

/// The blocks laid end to end in [`huge_page_bytes`]: the CLI's weight source for every run
/// and measurement of the native path.
pub fn weight_pack(blocks: &[Vec<u8>]) -> WeightPack {
    WeightPack::new_in(blocks, huge_page_bytes(blocks.iter().map(Vec::len).sum()))
}

/// An empty vector with room for `len` bytes whose pages the kernel is asked (Linux
/// `madvise(MADV_HUGEPAGE)`, before any byte is touched) to back with 2 MiB pages. AlexNet's
/// fully connected layers read 58 MB of weights an inference, past any cache: with 4 KiB pages
/// each row's stream crosses a page (and misses the TLB) every 4 KiB. Where the kernel
/// declines, or on other systems, the vector is an ordinary one.
pub fn huge_page_bytes(len: usize) -> Vec<u8> {
    let bytes = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    advise_huge_pages(bytes.as_ptr(), bytes.capacity());
    bytes
}

/// The advice for the whole pages inside `len` bytes from `start`; a failure is ignored (the
/// memory then keeps small pages).
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *const u8, len: usize) {
    const PAGE: usize = 4096;
    let first = (start as usize).next_multiple_of(PAGE);
    let end = (start as usize).saturating_add(len) / PAGE * PAGE;
    if end > first {
        // SAFETY: the range lies inside the vector's allocation, and the advice changes only
        // how the kernel backs those pages, not their contents or their mapping's validity.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartvm_vm::WeightSource;

    /// The storage is empty with room for the whole pack, and a pack laid out in it reads the
    /// same blocks as one laid out in an ordinary vector.
    #[test]
    fn huge_page_storage_holds_the_same_pack() {
        let blocks: Vec<Vec<u8>> = (0..5u8).map(|b| vec![b; 3 << 20]).collect();
        let storage = huge_page_bytes(15 << 20);
        assert!(storage.is_empty() && storage.capacity() >= 15 << 20);
        let (pack, plain) = (weight_pack(&blocks), WeightPack::new(&blocks));
        for b in 0..6u32 {
            assert_eq!(pack.block(b), plain.block(b));
        }
        assert_eq!(pack.span(1, 9 << 20), plain.span(1, 9 << 20));
    }
}
