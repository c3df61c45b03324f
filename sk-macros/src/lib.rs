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

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Error, FnArg, Ident, ItemFn, LitStr, Pat, Path, ReturnType, Token, Type, parse_macro_input,
};

/// Registers a plain or `async` function so `SkFunction` handles can call it
/// by name. See the crate docs for the options.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, false)
}

/// Registers a generator: a function returning an iterator (anything
/// `IntoIterator`) whose items are streamed by `SkFunction::stream`.
#[proc_macro_attribute]
pub fn generator(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, true)
}

fn expand(attr: TokenStream, item: TokenStream, generator: bool) -> TokenStream {
    let options = parse_macro_input!(attr as Options);
    let func = parse_macro_input!(item as ItemFn);
    match generate(options, func, generator) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Options {
    name: Option<LitStr>,
    layer: Option<Ident>,
    on_first_call: bool,
    krate: Option<Path>,
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut options = Options {
            name: None,
            layer: None,
            on_first_call: false,
            krate: None,
        };
        let items = Punctuated::<OptionItem, Token![,]>::parse_terminated(input)?;
        for item in items {
            match item {
                OptionItem::Name(n) => options.name = Some(n),
                OptionItem::Layer(l) => options.layer = Some(l),
                OptionItem::OnFirstCall => options.on_first_call = true,
                OptionItem::Crate(p) => options.krate = Some(p),
            }
        }
        Ok(options)
    }
}

enum OptionItem {
    Name(LitStr),
    Layer(Ident),
    OnFirstCall,
    Crate(Path),
}

impl Parse for OptionItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![crate]) {
            input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            return Ok(OptionItem::Crate(input.parse()?));
        }
        let key: Ident = input.parse()?;
        match key.to_string().as_str() {
            "name" => {
                input.parse::<Token![=]>()?;
                Ok(OptionItem::Name(input.parse()?))
            }
            "layer" => {
                input.parse::<Token![=]>()?;
                let layer: Ident = input.parse()?;
                match layer.to_string().as_str() {
                    "external" | "internal" | "global" => Ok(OptionItem::Layer(layer)),
                    _ => Err(Error::new(
                        layer.span(),
                        "layer must be `external`, `internal` or `global`",
                    )),
                }
            }
            "on_first_call" => Ok(OptionItem::OnFirstCall),
            _ => Err(Error::new(
                key.span(),
                "unknown option: expected `name = \"...\"`, `layer = ...`, `on_first_call` or `crate = path`",
            )),
        }
    }
}

struct Param {
    ident: Ident,
    ty: Type,
}

fn params(func: &ItemFn) -> syn::Result<Vec<Param>> {
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
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

fn generate(options: Options, mut func: ItemFn, generator: bool) -> syn::Result<TokenStream2> {
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
