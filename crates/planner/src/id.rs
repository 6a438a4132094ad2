//! Deterministic job ids.

use sha1::{Digest, Sha1};

/// The id of the job that request `request_id` creates for `action`.
///
/// The first 10 bytes of SHA-1 of `"<request id>\n<action>"`, in base32,
/// lowercase, without padding: 16 characters. The same request and action
/// always give the same id, so creating a request's jobs twice is detectable.
///
/// ```
/// assert_eq!(warden_planner::job_id("abcdefghijklmnop", "generate_dataset").len(), 16);
/// ```
pub fn job_id(request_id: &str, action: &str) -> String {
    JobIdPrefix::new(request_id).job_id(action)
}

/// The request id already hashed, so each job only hashes its action name.
#[derive(Clone)]
pub(crate) struct JobIdPrefix(Sha1);

impl JobIdPrefix {
    pub(crate) fn new(request_id: &str) -> Self {
        let mut hasher = Sha1::new();
        hasher.update(request_id.as_bytes());
        hasher.update(b"\n");
        JobIdPrefix(hasher)
    }

    pub(crate) fn job_id(&self, action: &str) -> String {
        let mut hasher = self.0.clone();
        hasher.update(action.as_bytes());
        let digest = hasher.finalize();
        let mut id = data_encoding::BASE32_NOPAD.encode(&digest[..10]);
        id.make_ascii_lowercase();
        id
    }
}
