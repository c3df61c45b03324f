//! Parsing the attribute's options: `name = "..."`, `layer = ...`,
//! `on_first_call`, `crate = path`.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Error, Ident, LitStr, Path, Token};

/// The options of `#[function(...)]` / `#[generator(...)]`.
pub(crate) struct Options {
    /// `name = "..."`: the registered name (default: the function's name).
    pub(crate) name: Option<LitStr>,
    /// `layer = external | internal | global` (default `external`).
    pub(crate) layer: Option<Ident>,
    /// `on_first_call`: register on the first call instead of at start-up.
    pub(crate) on_first_call: bool,
    /// `crate = path`: where the suitkaise items live (default `::suitkaise`).
    pub(crate) krate: Option<Path>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> syn::Result<Options> {
        syn::parse_str(text)
    }

    #[test]
    fn every_option_is_read() {
        let options =
            parse(r#"name = "resize", layer = internal, on_first_call, crate = ::sk_core"#)
                .unwrap();
        assert_eq!(options.name.unwrap().value(), "resize");
        assert_eq!(options.layer.unwrap().to_string(), "internal");
        assert!(options.on_first_call);
        assert!(options.krate.is_some());
        let none = parse("").unwrap();
        assert!(none.name.is_none() && none.layer.is_none() && !none.on_first_call);
    }

    #[test]
    fn a_bad_layer_or_an_unknown_option_is_a_clear_error() {
        let err = parse("layer = outer").err().unwrap();
        assert_eq!(
            err.to_string(),
            "layer must be `external`, `internal` or `global`"
        );
        let err = parse("retries = 3").err().unwrap();
        assert!(
            err.to_string()
                .starts_with("unknown option: expected `name"),
            "{err}"
        );
    }
}
