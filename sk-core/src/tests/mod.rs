//! Crate tests: behaviour that spans modules. Tests of one module sit
//! beside it (`mod tests`, in `<module>/tests.rs` when long).

mod error_chains;
mod modifiers;
