//! The layers of the KV stack, one file each, in stack order: each wraps
//! the layer below and does one thing. What a layer uses lives beside this
//! folder in `kv/`: `cache` for [`Cached`], `namespace` for [`Namespaced`],
//! `leasing` for [`Leased`], `read_barrier` for the cache's linearizable reads,
//! `ranges` for what a write touches (both [`Cached`] and [`Leased`]).

pub mod cached;
pub mod leased;
pub mod namespaced;
pub mod ordered;
pub mod prefixed;

pub use cached::Cached;
pub use leased::Leased;
pub use namespaced::Namespaced;
pub use ordered::Ordered;
pub use prefixed::Prefixed;
