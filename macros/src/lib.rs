//! `#[derive(Event)]` for tidewater: the event's type name and partition key, said where
//! the struct is declared instead of in an `impl Event` block.
//!
//! Use it through the `tidewater` crate (its `derive` feature, on by default):
//!
//! ```text
//! #[derive(Serialize, Deserialize, Event)]
//! #[event(type = "order.placed", key = order_id)]
//! struct OrderPlaced { order_id: String, cents: i64 }
//! ```
//!
//! `type` is required: the stable name other services read. `key` names a field whose
//! value (through `ToString`) is the partition key; without it, events have no key.
//! `aliases = ["OrderPlaced"]` gives names the type was published under before a
//! rename, which readers take as this type (`Event::ALIASES`). The derive writes
//! nothing else: for headers, implement `Event` by hand.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, DeriveInput, Ident, LitStr};

/// Implements `tidewater::Event` from `#[event(type = "...", key = field, aliases = ["..."])]`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let mut type_name: Option<LitStr> = None;
    let mut key: Option<Ident> = None;
    let mut aliases: Option<Vec<LitStr>> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("type") {
                type_name = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("key") {
                key = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("aliases") {
                let value = meta.value()?;
                let list;
                syn::bracketed!(list in value);
                let names = list.parse_terminated(|item| item.parse::<LitStr>(), syn::Token![,])?;
                aliases = Some(names.into_iter().collect());
                Ok(())
            } else {
                Err(meta.error(
                    "unknown event attribute; expected `type = \"...\"`, `key = field` or `aliases = [\"...\"]`",
                ))
            }
        })?;
    }
    let Some(type_name) = type_name else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Event)] needs #[event(type = \"...\")]: the event's stable type name",
        ));
    };
    if let Some(key) = &key {
        check_field(input, key)?;
    }
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let key_fn = key.map(|field| {
        quote! {
            fn key(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&self.#field))
            }
        }
    });
    if let Some(same) = aliases.iter().flatten().find(|alias| alias.value() == type_name.value()) {
        return Err(syn::Error::new_spanned(same, "an alias is a former name: this one is the type's name itself"));
    }
    let aliases_const = aliases.map(|names| {
        quote! { const ALIASES: &'static [&'static str] = &[#(#names),*]; }
    });
    Ok(quote! {
        impl #impl_generics ::tidewater::Event for #name #type_generics #where_clause {
            const TYPE: &'static str = #type_name;
            #aliases_const
            #key_fn
        }
    })
}

/// The key must be a named field of the struct, so that a typo is an error here and not
/// a confusing one in the generated code.
fn check_field(input: &DeriveInput, key: &Ident) -> syn::Result<()> {
    let syn::Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(key, "`key` needs a struct with named fields"));
    };
    if data.fields.iter().any(|f| f.ident.as_ref() == Some(key)) {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(key, format!("{} has no field `{key}`", input.ident)))
    }
}
