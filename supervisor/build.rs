//! Links the `supervisor` binary (which is also every worker: it re-executes itself) as a
//! non-PIE executable.
//!
//! A position-independent executable is loaded at a random address, so the dynamic loader
//! patches about 14,000 pointers in its read-only-after-relocation data (212 KiB of
//! `.data.rel.ro`) in every process: those pages become private, dirty copies, about 220 KiB in
//! each worker. Linked at a fixed address, the linker resolves them once and the pages stay
//! clean file pages that every worker shares. Measured with `fleet-bench --accounts 30`: an idle
//! worker's Pss_Anon 644 → 416 KiB, the fleet's total PSS 27.4 → 19.8 MiB (BENCHMARKS.md).
//!
//! The cost: the executable's own image is not address-randomised (shared libraries, heap and
//! stacks still are). The code is Rust with `unsafe_code` denied in our crates.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
