//! Where encoded batches go: the [`Buffer`] trait, over a fixed slice
//! (firmware) or a `Vec`.

use crate::error::EncodeError;

/// Where a [`BatchWriter`](crate::batch::BatchWriter) puts bytes: a fixed
/// slice (firmware) or a `Vec`.
pub trait Buffer {
    /// Bytes written so far.
    fn len(&self) -> usize;
    /// True when nothing has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most bytes this buffer can ever hold; `None` when it grows.
    fn capacity(&self) -> Option<usize> {
        None
    }
    /// Makes room for `additional` more bytes at once, where the buffer can
    /// grow (one allocation per record instead of one check per field).
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }
    /// Appends bytes, or fails without writing any.
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError>;
    /// The bytes written so far, to patch the header in place.
    fn written_mut(&mut self) -> &mut [u8];
}

/// A [`Buffer`] over a caller's fixed slice: no allocation.
#[derive(Debug)]
pub struct SliceBuffer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceBuffer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceBuffer { buf, len: 0 }
    }

    /// The bytes written, giving the slice back.
    pub fn into_written(self) -> &'a mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Buffer for SliceBuffer<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.buf.len())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        if end > self.buf.len() {
            return Err(EncodeError::BufferFull { needed: end, capacity: self.buf.len() });
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn written_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

#[cfg(feature = "alloc")]
impl Buffer for alloc::vec::Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        alloc::vec::Vec::len(self)
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        alloc::vec::Vec::reserve(self, additional);
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn written_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}
