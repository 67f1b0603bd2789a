//! The pure domain: parsing a delivery and deriving the rows it produces. No I/O, no HTTP, no SQL.

pub mod archive;
pub mod checkpoint;
pub mod delivery;
pub mod evidence;
pub mod json;
pub mod key;
pub mod ledger;
pub mod merkle;
pub mod normalize;
pub mod redaction;
pub mod ticket;
pub mod timestamp;

pub use delivery::{Action, Envelope, ParseError, StatusCode, MAX_DEPTH};
pub use key::{DeliveryKey, InvalidKey, KeySource};
pub use normalize::{derive, normalize, CommandRow, EventKind, MessageRole, MessageRow, Normalized};
pub use ticket::{CreateTime, TenantConflict, TicketState, TicketUpdate};
