//! Sense: the loop's ports to the outside and the vendors' wire shapes.
//! Reading is all this block does; nothing here decides or acts.

pub mod ads;
pub mod bank;
pub mod claims;
pub mod inbox;
pub mod models;
pub mod payables;
pub mod shipments;
pub mod shop;
pub mod wire;
