//! A per-thread free list of the L4 copy buffers: a direction takes a buffer only while it
//! holds bytes in flight and gives it back once they are written out, so idle connections
//! hold none and new connections neither allocate nor zero 64 KiB. Not shared across
//! threads (no lock); the list is capped, surplus buffers are freed.

use std::cell::RefCell;

/// Size of every pooled buffer.
pub(super) const BUF_SIZE: usize = 64 * 1024;
/// Most free buffers kept per thread (2 MiB at 64 KiB each); more are freed on return.
pub(super) const MAX_FREE: usize = 32;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Takes a free buffer of this thread, or allocates one.
pub(super) fn take() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

/// Gives a buffer back to this thread's free list (dropped when the list is full or the
/// buffer is not a pooled size).
pub(super) fn give(buf: Box<[u8]>) {
    if buf.len() != BUF_SIZE {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < MAX_FREE {
            f.push(buf);
        }
    });
}

/// Free buffers held by this thread.
#[cfg(test)]
fn free_count() -> usize {
    FREE.with(|f| f.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_list_is_capped() {
        // Runs on its own test thread: the list starts empty.
        let a = take();
        assert_eq!(a.len(), BUF_SIZE);
        let ptr = a.as_ptr();
        give(a);
        assert_eq!(free_count(), 1);
        let b = take();
        assert_eq!(b.as_ptr(), ptr, "the freed buffer is handed out again");
        assert_eq!(free_count(), 0);
        let many: Vec<_> = (0..MAX_FREE + 5).map(|_| take()).collect();
        many.into_iter().for_each(give);
        assert_eq!(free_count(), MAX_FREE);
        give(vec![0u8; 10].into_boxed_slice());
        assert_eq!(free_count(), MAX_FREE, "foreign sizes are not pooled");
        give(b);
    }
}
