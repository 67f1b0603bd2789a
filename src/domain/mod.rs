//! The pure domain: parsing a delivery and deriving the rows it produces. No I/O, no HTTP, no SQL.

pub mod delivery;
pub mod key;
pub mod ledger;
pub mod normalize;
pub mod ticket;

pub use delivery::{Action, Envelope, ParseError, StatusCode, MAX_DEPTH};
pub use key::{DeliveryKey, InvalidKey, KeySource};
pub use normalize::{normalize, CommandRow, EventKind, MessageRole, MessageRow, Normalized};
pub use ticket::{CreateTime, TicketState, TicketUpdate};
