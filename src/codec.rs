//! The gRPC codec of every service and client: prost, with small starting
//! buffers.
//!
//! tonic starts each call's encode and decode buffers at 8 KiB. With
//! thousands of long-lived streams (keep-alives, watches) those buffers were
//! most of the proxy's memory, while etcd's messages are mostly a few hundred
//! bytes. Buffers still grow to whatever a message needs.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Starting size of a call's encode and decode buffers.
const START_BUFFER: usize = 1024;
/// Encoded responses gathered before they are handed to HTTP/2 (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`START_BUFFER`]-byte starting buffers.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(START_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(START_BUFFER, YIELD_THRESHOLD))
    }
}
