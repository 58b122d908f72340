//! Wire shapes of external APIs and their decoding into domain types.
//! Pure data: no I/O here. The sim's world speaks these shapes, and the live
//! adapters decode with the same functions.

pub mod agentmail;
pub mod anthropic;
pub mod gemini;
pub mod meta;
pub mod revolut;
pub mod shopify;
pub mod shopify_orders;
pub mod track17;
