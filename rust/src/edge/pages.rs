//! Transparent huge pages off for a server's process, so that a frame never waits for a 2 MiB
//! page to be found and zeroed. Called by `ferrotile serve` for its process or each worker, not
//! by the embedded `SimpleServer`, which runs in its user's process (their arrays keep theirs).
//!
//! Why: every frame the edge receives gets a fresh buffer, and until a node's retained window
//! is full (256 MiB by default, and again for each new node, such as each Bluesky run) those
//! buffers come from memory the process has not touched yet. mimalloc asks the kernel for huge
//! pages on its arenas (`MADV_HUGEPAGE`); the first touch of each then held up the thread that
//! delivers frames while 2 MiB were found and zeroed, milliseconds on this class of VM (whose
//! freed memory goes back to the host). 256 KiB frames to 32 subscribers at 100 Hz for 5 s
//! (always in that phase) had a p99 latency of 10.6 ms in-process with huge pages, 4.9-6.1 ms
//! without; large frames one to one and flat-out fan-out measured no dearer without them
//! (`bench/README.md`, "Transparent huge pages off").

/// Disables transparent huge pages for this process from now on (every mapping, including
/// those made before: the kernel checks at each page fault). Best effort: a kernel without
/// `PR_SET_THP_DISABLE` (before 3.15) keeps its default.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it only sets a bit
        // on this process's memory descriptor and cannot affect memory safety.
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if done != 0 {
            super::log::warn(&format!("could not disable transparent huge pages: {}", std::io::Error::last_os_error()));
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_process_no_longer_gets_huge_pages() {
        disable_transparent_huge_pages();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("THP_enabled:")).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}
