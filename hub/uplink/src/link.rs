//! What the forwarder needs of a remote end, whatever its protocol: send
//! runs of records, two in flight at most, and say when the remote side
//! has acknowledged them, in order.

use std::future::Future;

/// One record on its way out, read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The record's offset in its local partition.
    pub offset: u64,
    /// The local partition.
    pub partition: u32,
    /// The upstream topic, from the uplink's template.
    pub remote_topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A link that failed: of the records not yet reported acknowledged (by an
/// `Ok` of [`Link::send`] or [`Link::flush`]), the first `acked` were
/// acknowledged (their progress may be committed); the rest must be sent
/// again on a new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub acked: usize,
    /// Records handed to the connection past `acked`: the upstream may have
    /// them already, so sending them again may duplicate them.
    pub in_flight: usize,
    pub error: String,
}

/// A connection to the upstream. A link that fails is dropped and a new one
/// opened, so a link never has to recover by itself.
pub trait Link {
    /// Queues `records` after those of earlier calls and returns once every
    /// record of the earlier calls is acknowledged (this call's may still
    /// be in flight): the upstream is not left idle while the next run is
    /// read and prepared, and at most two runs are in flight.
    fn send(&mut self, records: &[Outgoing]) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Returns once every record sent is acknowledged.
    fn flush(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Resolves when the link fails while nothing is being sent (keep-alive
    /// lost, connection closed), with the reason.
    fn failed(&mut self) -> impl Future<Output = String> + Send;
}
