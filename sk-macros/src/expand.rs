//! Generating the registration: a spec function that builds the
//! `FunctionSpec` (decoding each argument by name) and either a static
//! `inventory` submission or, with `on_first_call`, a guard at the top of
//! the function's body.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{Error, Ident, ItemFn, LitStr, Type};

use crate::options::Options;
use crate::signature::{params, returns_result};

/// The function as written, plus the code that registers it.
pub(crate) fn generate(
    options: Options,
    mut func: ItemFn,
    generator: bool,
) -> syn::Result<TokenStream2> {
    if !func.sig.generics.params.is_empty() {
        return Err(Error::new(
            func.sig.generics.span(),
            "generic functions cannot be registered: their parameter types must be known",
        ));
    }
    let is_async = func.sig.asyncness.is_some();
    if is_async && generator {
        return Err(Error::new(
            func.sig.span(),
            "a generator cannot be async: return an iterator",
        ));
    }
    let krate = options
        .krate
        .unwrap_or_else(|| syn::parse_quote!(::suitkaise));
    let p = quote!(#krate::__private);
    let fn_ident = func.sig.ident.clone();
    let name = options
        .name
        .unwrap_or_else(|| LitStr::new(&fn_ident.to_string(), fn_ident.span()));
    let layer = match options.layer.map(|l| l.to_string()) {
        Some(l) if l == "internal" => quote!(#p::Layer::Internal),
        Some(l) if l == "global" => quote!(#p::Layer::Global),
        _ => quote!(#p::Layer::External),
    };
    let params = params(&func)?;
    let idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let types: Vec<&Type> = params.iter().map(|p| &p.ty).collect();
    let pnames: Vec<LitStr> = params
        .iter()
        .map(|p| LitStr::new(&p.ident.to_string(), p.ident.span()))
        .collect();
    let decode = quote! {
        #( let #idents: #types = __sk_args.decode::<#types>(#name, #pnames)?; )*
    };
    let result = returns_result(&func.sig.output);
    let call = quote!(#fn_ident(#(#idents),*));
    let constructor = if is_async {
        let body = if result {
            quote!(#call.await.map_err(::core::convert::Into::into))
        } else {
            quote!(::core::result::Result::Ok(#call.await))
        };
        quote! {
            #p::FunctionSpec::asynchronous(#name, [#( #p::ParamSpec::of::<#types>(#pnames) ),*],
                |__sk_args: &#p::Args| {
                    #decode
                    ::core::result::Result::Ok(async move {
                        let __sk_out: ::core::result::Result<_, #p::BoxError> = #body;
                        __sk_out
                    })
                })
        }
    } else {
        let body = if result {
            quote!(#call.map_err(::core::convert::Into::into))
        } else {
            quote!(::core::result::Result::Ok(#call))
        };
        let ctor = if generator {
            quote!(generator)
        } else {
            quote!(plain)
        };
        quote! {
            #p::FunctionSpec::#ctor(#name, [#( #p::ParamSpec::of::<#types>(#pnames) ),*],
                |__sk_args: &#p::Args| {
                    #decode
                    let __sk_out: ::core::result::Result<_, #p::BoxError> = #body;
                    __sk_out
                })
        }
    };
    let spec_fn = format_ident!("__suitkaise_spec_{}", fn_ident, span = Span::call_site());
    let registration = if options.on_first_call {
        let body = &func.block;
        func.block = syn::parse_quote!({
            {
                static __SK_REGISTERED: ::std::sync::Once = ::std::sync::Once::new();
                __SK_REGISTERED.call_once(|| #p::register_on_first_call(#spec_fn));
            }
            #body
        });
        quote!()
    } else {
        quote! {
            #p::inventory::submit! { #p::StaticFunction::new(#spec_fn) }
        }
    };
    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #spec_fn() -> #p::FunctionSpec {
            #constructor
                .at(::core::concat!(::core::file!(), ":", ::core::line!()))
                .in_layer(#layer)
        }

        #registration
    })
}
