//! `authsession openapi`: the OpenAPI 3.1 document of both surfaces. It is kept beside the
//! routers and checked against them and against real responses by `tests/api/contract.rs`.

/// The document, as shipped.
pub const DOCUMENT: &str = include_str!("../http/openapi.json");
