//! Procedural macros for Suitkaise. Use them through the `suitkaise` crate:
//! `#[suitkaise::function]` and `#[suitkaise::generator]`.
//!
//! The attribute keeps the function as it is and registers it, by name and
//! parameter names, in the function registry of every process of the binary
//! (statically, with no setup code), so that an `SkFunction` handle can
//! bind its arguments by parameter name and execute it — in this process or
//! in another one that received the handle.
//!
//! Options: `name = "..."` (default: the function's name), `layer =
//! external | internal | global` (default `external`), `on_first_call`
//! (register when the function is first called instead of at start-up),
//! `crate = path` (where the suitkaise items live; default `::suitkaise`).
//!
//! # Modules
//!
//! The entry points below parse their input and hand it to private
//! modules, each using only those listed before it:
//!
//! | module | does | uses |
//! |---|---|---|
//! | `options` | parses the attribute's options | — |
//! | `signature` | reads the function's parameters and return type | — |
//! | `expand` | generates the function plus its registration | options, signature |

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

mod expand;
mod options;
mod signature;

use proc_macro::TokenStream;
use syn::{ItemFn, parse_macro_input};

use crate::options::Options;

/// Registers a plain or `async` function so `SkFunction` handles can call it
/// by name. See the crate docs for the options.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_attribute(attr, item, false)
}

/// Registers a generator: a function returning an iterator (anything
/// `IntoIterator`) whose items are streamed by `SkFunction::stream`.
#[proc_macro_attribute]
pub fn generator(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_attribute(attr, item, true)
}

fn expand_attribute(attr: TokenStream, item: TokenStream, generator: bool) -> TokenStream {
    let options = parse_macro_input!(attr as Options);
    let func = parse_macro_input!(item as ItemFn);
    match expand::generate(options, func, generator) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
