//! Server-side views of array streams: what a subscriber asked to see of each frame
//! (`slice=`, `bin=`, `dtype=` with `range=`, `compression=`), computed in Rust once per frame
//! per distinct view and shared by every subscriber of that view ([`ViewCache`]). Plain Rust,
//! below the edge: it knows messages and their array hints, not sockets.

mod binning;
mod cache;
mod compression;
mod conversion;
mod element;
mod selection;
mod spec;
mod viewed;

pub use cache::{ViewCache, ViewMember, ViewSlot, ViewStats, OTHER_TOPIC};
pub use compression::Codec;
pub use spec::{ViewOutput, ViewSpec};
pub use viewed::Viewed;
