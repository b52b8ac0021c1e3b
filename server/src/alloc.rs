//! The memory allocator of the `twofold` and `twofold-load` binaries: jemalloc, with
//! the options compiled in from `.cargo/config.toml`.
//!
//! With glibc's allocator about a seventh of the server's time in an effective-policy
//! read went to `malloc` and `free`, a third of that to threads waiting on each other's
//! arena locks: blocks are often freed on another thread than the one that allocated
//! them (cache entries, the writer's results, responses). jemalloc frees those through
//! per-thread caches without the wait (BENCHMARKS.md, "The read's miss path, and jemalloc").

/// The allocator each binary installs with `#[global_allocator]`.
pub type Allocator = tikv_jemallocator::Jemalloc;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The options of `.cargo/config.toml` reached jemalloc's build and were parsed: a
    /// build without them would keep freed memory until the next allocation happens to
    /// purge it, so an idle server would not shrink.
    #[test]
    fn the_allocator_options_reached_the_build() {
        let conf = tikv_jemalloc_ctl::config::malloc_conf::read().unwrap();
        assert!(conf.contains("background_thread:true"), "{conf}");
        assert!(conf.contains("muzzy_decay_ms:0"), "{conf}");
        assert!(tikv_jemalloc_ctl::opt::background_thread::read().unwrap());
    }
}
