//! The stream every read goes through: passes chunks on while hashing them, and ends with
//! [`BlobError::Corrupt`] instead of a clean end when the bytes were not the blob's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

use crate::{BlobError, Hashing};

/// A blob's bytes, checked against its hash and size when the inner stream ends.
pub(crate) struct Verified {
    inner: BoxStream<'static, Result<Bytes, BlobError>>,
    /// `None` once the check is done (or an error ended the stream): nothing more to yield.
    hashing: Option<Hashing>,
    hash: String,
    size: u64,
}

impl Verified {
    pub(crate) fn new(inner: BoxStream<'static, Result<Bytes, BlobError>>, hash: &str, size: u64) -> Self {
        Verified { inner, hashing: Some(Hashing::default()), hash: hash.to_owned(), size }
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, BlobError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.hashing.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = self.hashing.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.hashing = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let got = self.hashing.take().map(Hashing::finish);
                match got {
                    Some(got) if got.hash != self.hash || got.size != self.size => {
                        Poll::Ready(Some(Err(BlobError::Corrupt {
                            hash: self.hash.clone(),
                            detail: format!(
                                "read {} bytes hashing to {}, expected {} bytes",
                                got.size, got.hash, self.size
                            ),
                        })))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}
