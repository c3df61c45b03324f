//! Reading the registered function's signature: its parameters (which must
//! be plain names of owned types, bound by name) and whether it returns a
//! `Result`.

use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, ItemFn, Pat, ReturnType, Type};

/// One parameter of the registered function: its name and type.
pub(crate) struct Param {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

/// The function's parameters, refusing what cannot be bound by name and
/// decoded: `self`, patterns, and references.
pub(crate) fn params(func: &ItemFn) -> syn::Result<Vec<Param>> {
    func.sig
        .inputs
        .iter()
        .map(|input| match input {
            FnArg::Receiver(r) => Err(Error::new(
                r.span(),
                "methods cannot be registered: register a free function",
            )),
            FnArg::Typed(pt) => {
                let ident = match &*pt.pat {
                    Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
                    other => {
                        return Err(Error::new(
                            other.span(),
                            "parameters of a registered function must be plain names: they are bound by name",
                        ));
                    }
                };
                if let Type::Reference(r) = &*pt.ty {
                    return Err(Error::new(
                        r.span(),
                        "parameters of a registered function must be owned types (arguments are decoded into them)",
                    ));
                }
                Ok(Param {
                    ident,
                    ty: (*pt.ty).clone(),
                })
            }
        })
        .collect()
}

/// Whether the declared return type is a `Result` (by its last path
/// segment, so `io::Result<T>` and `anyhow::Result<T>` count too).
pub(crate) fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_by_name_and_references_refused() {
        let func: ItemFn = syn::parse_quote!(
            fn f(width: u32, label: String) {}
        );
        let names: Vec<String> = params(&func)
            .unwrap()
            .iter()
            .map(|p| p.ident.to_string())
            .collect();
        assert_eq!(names, ["width", "label"]);
        let func: ItemFn = syn::parse_quote!(
            fn f(label: &str) {}
        );
        let err = params(&func).err().unwrap();
        assert!(err.to_string().contains("must be owned types"), "{err}");
    }

    #[test]
    fn any_result_named_result_counts() {
        let returns = |func: ItemFn| returns_result(&func.sig.output);
        assert!(returns(syn::parse_quote!(
            fn f() -> io::Result<u8> {
                todo!()
            }
        )));
        assert!(returns(syn::parse_quote!(
            fn f() -> Result<u8, E> {
                todo!()
            }
        )));
        assert!(!returns(syn::parse_quote!(
            fn f() -> u8 {
                0
            }
        )));
        assert!(!returns(syn::parse_quote!(
            fn f() {}
        )));
    }
}
