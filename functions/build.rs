//! Link settings of the four Lambda binaries (each function's `build`).
//!
//! The budget is 10 MB per stripped binary (Lambda zips and cold starts grow
//! with it), and the passkey ceremonies (webauthn-rs and its RustCrypto
//! curves) took `users` to 10.51 MB. Two linker settings bring it back:
//!
//! - `-no-pie`: a position-dependent executable has no table of ~27,000
//!   load-time relocations (`.rela.dyn`, 648 KB in `users`), and the loader
//!   has nothing to patch at start. The cost is that the executable's own
//!   code sits at a fixed address (the heap, stack and shared libraries are
//!   still randomised): a hardening trade for a memory-safe program, worth
//!   revisiting if the budget is ever lifted.
//! - `--icf=all`: lld folds functions whose machine code is identical (Rust
//!   monomorphisation makes many), 106 KB in `users`. Rust never promises
//!   distinct addresses for distinct functions, so nothing may rely on them.
//!
//! Measured on `users` (release, stripped): 10,511,632 bytes as built by
//! default, 10,405,072 with ICF, 9,761,936 with both.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
}
