//! The protobuf codec of every Sinew gRPC service: prost's, with small buffers.
//!
//! tonic allocates a call's encode and decode buffers eagerly, 8 KiB each by default. The control
//! plane holds one discovery stream per proxy for hours, so that was ~16 KiB of mostly idle
//! memory per connected proxy. Our requests are small (names, ACKs) and a buffer grows to the
//! message it holds, so 1 KiB to start costs nothing but an occasional re-allocation.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// What each buffer starts at (and grows by).
pub const BUFFER_SIZE: usize = 1024;
/// How many bytes of ready messages are batched into one write (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with [`BUFFER_SIZE`] buffers; the generated services use it (`proto/build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    use crate::discovery::v1::{DiscoveryRequest, DiscoveryResponse};

    #[test]
    fn both_directions_use_the_small_buffers() {
        // tonic keeps the sizes private; its Debug output is the only way to read them back.
        let mut codec = SmallBufferCodec::<DiscoveryResponse, DiscoveryRequest>::default();
        let want = format!("buffer_size: {BUFFER_SIZE},");
        for settings in [
            codec.encoder().buffer_settings(),
            codec.decoder().buffer_settings(),
        ] {
            assert!(format!("{settings:?}").contains(&want), "{settings:?}");
        }
    }
}
